"""VAE objectives (beta, warm-up, free bits, IWAE), conv nets, the contractive penalty, the AAE, latent
figures and the new configs."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aelab import config as config_lib
from aelab import latent, nets, plots, train
from aelab.models import aae, ae, common, vae
from conftest import load_config, small

NEW_CONFIGS = ('beta_vae', 'iwae', 'conv_vae', 'aae', 'cae')


def _trained(config, epochs):
  """(run, state) after ``epochs`` scanned epochs on the config's data, without a workdir."""
  run = train.Run(config, train.data.load(config.data))
  state = run.init_state()
  x = jnp.asarray(run.dataset.x_train)
  for epoch in range(1, epochs + 1):
    state, metrics = run.train_epoch(state, x, jax.random.fold_in(run.train_key, epoch), run.hp)
  return run, state


def test_kl_warmup_factor_is_linear_then_one():
  factors = [float(train.kl_warmup_factor(s, 100.0)) for s in (0, 25, 50, 100, 1000)]
  assert factors == [0.0, 0.25, 0.5, 1.0, 1.0]
  assert float(train.kl_warmup_factor(0, 0.0)) == 1.0


def test_train_step_passes_the_warmed_up_kl_weight_to_the_objective():
  objective = lambda params, x, key, hp: (jnp.sum(params * x), {'loss': 0.0, 'kl_weight': hp['kl_weight']})  # noqa
  step = jax.jit(train.make_train_step(objective, optax.sgd(0.1)))
  hp = {'kl_weight': jnp.float32(4.0), 'kl_warmup_steps': jnp.float32(10.0)}
  state = {'step': jnp.int32(0), 'params': jnp.ones(3), 'opt_state': optax.sgd(0.1).init(jnp.ones(3))}
  seen = []
  for _ in range(12):
    state, metrics = step(state, jnp.ones((2, 3)), jax.random.key(0), hp)
    seen.append(float(metrics['kl_weight']))
  np.testing.assert_allclose(seen[:3] + seen[-2:], [0.0, 0.4, 0.8, 4.0, 4.0], rtol=1e-6)


def test_free_bits_floor_the_batch_mean_kl_of_each_dimension():
  kl_BxZ = jnp.array([[0.1, 3.0, 0.0], [0.3, 1.0, 0.0]])  # batch means 0.2, 2.0, 0.0
  np.testing.assert_allclose(vae.free_bits_kl(kl_BxZ, 0.5), 0.5 + 2.0 + 0.5, rtol=1e-6)
  np.testing.assert_allclose(vae.free_bits_kl(kl_BxZ, 0.0), 2.2, rtol=1e-6)
  grad = jax.grad(lambda k: vae.free_bits_kl(k, 0.5))(kl_BxZ)  # no pull on dimensions under the floor
  np.testing.assert_allclose(grad, [[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]])


def _objective_and_params(**model):
  config = load_config('vae')
  config.model.update(model)
  model_ = vae.build(config, 64)
  params = jax.jit(vae.init, static_argnums=0)(model_, jax.random.key(0), jnp.zeros((1, 64)))
  hp = {k: jnp.float32(v) for k, v in train.models.hyperparams(config).items()}
  x = (jax.random.uniform(jax.random.key(1), (16, 64)) > 0.5).astype(jnp.float32)
  return vae.make_objective(model_, config), params, x, hp


def test_kl_weight_and_free_bits_are_traced_hyperparameters():
  objective, params, x, hp = _objective_and_params()
  loss = jax.jit(objective)
  key = jax.random.key(2)
  l1, m1 = loss(params, x, key, hp)
  l2, _ = loss(params, x, key, {**hp, 'kl_weight': jnp.float32(2.0)})
  np.testing.assert_allclose(l2 - l1, m1['kl'], rtol=1e-4)
  l_fb, _ = loss(params, x, key, {**hp, 'free_bits': jnp.float32(5.0)})  # every dimension under the floor
  np.testing.assert_allclose(l_fb, m1['recon'] + 5.0 * 20, rtol=1e-5)
  assert loss._cache_size() == 1


def test_iwae_objective_bounds_the_elbo_and_trains():
  objective, params, x, hp = _objective_and_params(num_samples=20)
  _, metrics = jax.jit(objective)(params, x, jax.random.key(3), hp)
  assert metrics['neg_iwae'] < metrics['neg_elbo']
  config = small(load_config('iwae'))
  run = train.Run(config, train.data.load(config.data))
  state, x = run.init_state(), jnp.asarray(run.dataset.x_train)
  losses = []
  for epoch in (1, 2, 3):
    state, metrics = run.train_epoch(state, x, jax.random.key(epoch), run.hp)
    losses.append(float(jnp.mean(metrics['neg_iwae'])))
    assert float(jnp.mean(metrics['neg_iwae'])) < float(jnp.mean(metrics['neg_elbo']))
  assert losses[2] < losses[0], losses


@pytest.mark.parametrize('shape', [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
def test_conv_encoder_decoder_shapes(shape):
  config = load_config('conv_vae', 'mnist')  # channels (32, 64)
  model = vae.build(config, shape)
  d = int(np.prod(shape))
  x = jax.ShapeDtypeStruct((3, d), jnp.float32)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  params = jax.eval_shape(lambda k, v: vae.init(model, k, v), key, x)
  mean, log_var, out = jax.eval_shape(lambda p, v, k: model.apply(p, v, k), params, x, key)
  assert mean.shape == log_var.shape == (3, 20) and out.shape == (3, d)
  encoder, decoder = params['params']['encoder'], params['params']['decoder']
  assert encoder['conv_0']['kernel'].shape == (4, 4, shape[2], 32)
  assert decoder['upconv_1']['kernel'].shape == (3, 3, 32, 4 * shape[2])
  ae_model = ae.build(config, shape)
  ae_params = jax.eval_shape(lambda k, v: ae.init(ae_model, k, v), key, x)
  z, out = jax.eval_shape(ae_model.apply, ae_params, x)
  assert z.shape == (3, 20) and out.shape == (3, d)


def test_conv_vae_trains_on_digits():
  config = small(load_config('conv_vae'))
  run = train.Run(config, train.data.load(config.data))
  state, x = run.init_state(), jnp.asarray(run.dataset.x_train)
  losses = []
  for epoch in (1, 2):
    state, metrics = run.train_epoch(state, x, jax.random.key(epoch), run.hp)
    losses.append(float(jnp.mean(metrics['loss'])))
  assert np.isfinite(losses).all() and losses[1] < losses[0], losses


def test_conv_net_refuses_tabular_data_and_odd_image_sizes():
  with pytest.raises(ValueError, match='divisible by 4'):
    nets.check_conv_shape((30, 30, 1), 2)
  with pytest.raises(ValueError, match='model.net=mlp'):
    vae.build(load_config('conv_vae'), 18)
  config = load_config('conv_vae')
  config.data.update(name='csv', path='x.csv')
  dataset = train.data.Dataset(np.zeros((8, 5), np.float32), None, np.zeros((2, 5), np.float32), None, (5,),
                               'tabular', 'csv')
  config.model.likelihood = 'gaussian'
  config.model.output_activation = 'identity'
  with pytest.raises(config_lib.ConfigError, match='needs images'):
    train.check_compatible(config, dataset)


def _sigmoid_encoder(hidden, latent_dim, d=12):
  config = load_config('cae')
  config.model.update(hidden=hidden, latent_dim=latent_dim)
  model = ae.build(config, d)
  params = model.init(jax.random.key(0), jnp.zeros((1, d)))
  x = jax.random.uniform(jax.random.key(1), (5, d))
  return model, params, x


@pytest.mark.parametrize('hidden,latent_dim', [((), 7), ((9,), 4), ((), 30)])
def test_contractive_closed_form_equals_jvp_vjp_and_jacobian(hidden, latent_dim):
  model, params, x = _sigmoid_encoder(hidden, latent_dim)
  encode = lambda v: model.apply(params, v, method=ae.Model.encode)  # noqa: E731
  exact = common.contractive_sigmoid_mlp(*common._sigmoid_mlp_layers(params), x)
  products = common.jacobian_frobenius_sq(encode, x)  # vjp for Z <= D, jvp for Z > D (latent 30 > 12)
  brute = jnp.sum(jnp.square(jax.vmap(jax.jacfwd(lambda v: encode(v[None])[0]))(x)), axis=(1, 2))
  np.testing.assert_allclose(exact, brute, rtol=1e-5)
  np.testing.assert_allclose(products, brute, rtol=1e-5)


def test_contractive_penalty_shrinks_the_encoder_jacobian():
  def jacobian_norm(weight):
    config = small(load_config('cae'))
    config.penalty.weight = weight
    run, state = _trained(config, 3)
    params = state['params']
    return float(jnp.mean(common.contractive_sigmoid_mlp(*common._sigmoid_mlp_layers(params),
                                                         jnp.asarray(run.dataset.x_test))))
  assert jacobian_norm(3.0) < 0.6 * jacobian_norm(0.0)  # 1.47 vs 2.91 seen


def test_aae_step_updates_autoencoder_and_discriminator():
  config = small(load_config('aae'))
  run = train.Run(config, train.data.load(config.data))
  state = run.init_state()
  x = jnp.asarray(run.dataset.x_train[:64])
  new, metrics = jax.jit(run.train_step)(state, x, jax.random.key(0), run.hp)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state['params'], new['params'])
  assert all(jax.tree.leaves(changed['discriminator']))
  assert all(jax.tree.leaves(changed['autoencoder']['params']['encoder']))
  assert all(jax.tree.leaves(changed['autoencoder']['params']['decoder']))
  assert int(new['opt_state']['gen'][0].count) == 1
  assert set(metrics) >= {'loss', 'recon', 'disc_loss', 'gen_loss', 'disc_accuracy'}
  np.testing.assert_allclose(metrics['disc_loss'], 2 * np.log(2), atol=0.3)  # near chance at the start


def test_aae_codes_move_toward_the_gaussian_prior():
  def moment_distance(adversarial_weight):
    config = small(load_config('aae'))
    config.model.prior = 'gaussian'
    config.aae.update(adversarial_weight=adversarial_weight, disc_learning_rate=1e-3, gen_learning_rate=1e-3)
    run, state = _trained(config, 8)
    z = run.family.make_encode(run.model, config)(state['params'], jnp.asarray(run.dataset.x_test))
    return float(jnp.sum(jnp.square(jnp.mean(z, 0))) + jnp.sum(jnp.square(jnp.cov(z.T) - jnp.eye(2))))
  assert moment_distance(1.0) < 0.5 * moment_distance(0.0)


def test_aae_mixture_prior_and_its_errors():
  config = load_config('aae')
  z = aae.sample_prior(config, jax.random.key(0), 5000)
  radii = jnp.linalg.norm(z, axis=-1)
  assert z.shape == (5000, 2) and abs(float(jnp.mean(radii)) - 4.0) < 0.1
  angles = np.arctan2(np.asarray(z[:, 1]), np.asarray(z[:, 0])) % (2 * np.pi)
  counts = np.bincount(np.round(angles / (np.pi / 5)).astype(int) % 10)
  assert counts.min() > 400  # ten components, equally likely
  config.model.latent_dim = 3
  with pytest.raises(config_lib.ConfigError, match='latent_dim=2'):
    config_lib.validate(config)


def test_latent_interpolation_and_traversal():
  z_a, z_b = jnp.array([0.0, 1.0]), jnp.array([2.0, -1.0])
  path = latent.interpolate(z_a, z_b, 5)
  np.testing.assert_allclose(np.asarray(path)[[0, 2, 4]], [[0.0, 1.0], [1.0, 0.0], [2.0, -1.0]])
  grid = latent.traverse(jnp.array([0.5, 0.5, 0.5]), jnp.array([-1.0, 1.0]), 2)
  np.testing.assert_allclose(grid, [[[-1.0, 0.5, 0.5], [1.0, 0.5, 0.5]], [[0.5, -1.0, 0.5], [0.5, 1.0, 0.5]]])


def test_config_errors_name_the_field():
  cases = {'model.num_samples': 0, 'model.net': 'rnn', 'model.free_bits': -1.0, 'eval.nll_samples': 0}
  for field, value in cases.items():
    config = load_config('vae')
    section, name = field.split('.')
    config[section][name] = value
    with pytest.raises(config_lib.ConfigError, match=field.replace('.', r'\.')):
      config_lib.validate(config)
  config = load_config('iwae')
  config.model.free_bits = 0.5
  with pytest.raises(config_lib.ConfigError, match='free_bits'):
    config_lib.validate(config)


@pytest.mark.parametrize('name', NEW_CONFIGS)
def test_new_configs_validate_for_every_data_arg(name):
  for arg in (None, 'mnist', 'idx=some/dir'):
    config = load_config(name, arg)
    config_lib.validate(config)
    assert config.data.name == (arg or 'digits').split('=')[0]


def test_figures_of_a_generative_run(tmp_path):
  config = small(load_config('vae'), epochs=2)
  config.model.latent_dim = 2
  config.train.figures_every = 1
  summary = train.train_and_evaluate(config, str(tmp_path))
  figures = set(os.listdir(tmp_path / 'figures'))
  assert {'samples.png', 'interpolation.png', 'traversal.png', 'latent_scatter.png',
          'reconstructions_over_epochs.png'} <= figures
  assert summary['test/nll'] < summary['test/neg_elbo'] and 0 <= summary['test/active_units'] <= 2
  points, axis = plots.project_2d(np.random.default_rng(0).normal(size=(50, 5)), 'pca')
  assert points.shape == (50, 2) and axis == 'PC'


@pytest.mark.parametrize('kernel_size,stride,shape', [(4, 2, (2, 8, 8, 3)), (3, 1, (2, 7, 7, 5)), (4, 2, (1, 28, 28, 1))])
def test_patch_conv_equals_flax_conv(kernel_size, stride, shape):
  x = jax.random.normal(jax.random.key(0), shape)
  ours = nets.Conv(6, kernel_size, stride)
  params = jax.jit(ours.init)(jax.random.key(1), x)
  reference = nn.Conv(6, (kernel_size, kernel_size), strides=(stride, stride), padding='SAME')
  np.testing.assert_allclose(jax.jit(ours.apply)(params, x), jax.jit(reference.apply)(params, x), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(nets.depth_to_space(jnp.arange(8.0).reshape(1, 1, 1, 8))[0, :, :, 1],
                             [[1.0, 3.0], [5.0, 7.0]])
