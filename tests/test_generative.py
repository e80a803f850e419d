"""The generative families of issue 17 (part one): wae, info_vae, rae, vamp, miwae, piwae, ciwae.

Each loss against a hand computation on a tiny batch (numpy MMD with the kernels written out, the VampPrior's
log-density as a numpy logsumexp of Gaussians, the MIWAE / PIWAE / CIWAE bounds from their definitions), a few
epochs of each family on digits (finite, falling loss; NLL <= negative ELBO where there is a likelihood), and a
sweep over each family's weight as one compiled program."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from aelab import config as config_lib
from aelab import data, models
from aelab.eval import metrics
from aelab.models import miwae, piwae, rae, vae, vamp
from aelab.nn import losses
from aelab.train import engine, sweep
from conftest import load_config, small

FAMILIES = ('wae', 'info_vae', 'rae', 'vamp', 'miwae', 'piwae', 'ciwae')
LIKELIHOOD_FAMILIES = ('info_vae', 'vamp', 'miwae', 'piwae', 'ciwae')


def tiny(name: str, epochs: int = 3):
  """``configs/<name>.py`` on digits, shrunk: 32 hidden units, 4 latents, 640 training examples."""
  config = small(load_config(name), epochs=epochs)
  config.model.update(hidden=(32,), latent_dim=4)
  config.data.max_train_examples = 640
  if name == 'vamp':
    config.vamp.num_components = 10
  if name in ('miwae', 'piwae', 'ciwae'):
    config.vae.num_samples = 3
  if name in ('miwae', 'piwae'):
    config[name].num_estimates = 2
  return config


def bound_family(name: str, **fields):
  """``(family, params, x_BxD, hp)`` of ``tiny(name)`` with ``fields`` set (dotted), on 6 random binary examples
  of 64 pixels."""
  config = tiny(name)
  for dotted, value in fields.items():
    section, field = dotted.split('.')
    config[section][field] = value
  config_lib.validate(config)
  family = models.get(config, 64)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 64)))
  hp = {k: jnp.float32(v) for k, v in models.hyperparams(config).items()}
  x = (jax.random.uniform(jax.random.key(1), (6, 64)) > 0.5).astype(jnp.float32)
  return family, params, x, hp


# ---- hand computations in numpy ----


def np_bce(logits, x):
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  return -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)


def np_kernel(kind, a, b, c):
  """The kernel written out pair by pair."""
  k = np.zeros((len(a), len(b)))
  for i in range(len(a)):
    for j in range(len(b)):
      d2 = float(np.sum((np.float64(a[i]) - b[j]) ** 2))
      k[i, j] = c / (c + d2) if kind == 'imq' else np.exp(-d2 / c)
  return k


def np_mmd(kind, z, p, c):
  """Gretton et al. 2012, Eq. 3: the unbiased MMD^2, sums over i != j written out."""
  n, m = len(z), len(p)
  kzz, kpp, kzp = np_kernel(kind, z, z, c), np_kernel(kind, p, p, c), np_kernel(kind, z, p, c)
  same_z = sum(kzz[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  same_p = sum(kpp[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  return same_z + same_p - 2 * kzp.sum() / (n * m)


@pytest.mark.parametrize('kind', ['imq', 'rbf'])
def test_mmd_equals_the_kernel_sums_written_out(kind):
  rng = np.random.default_rng(0)
  z, p = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
  c = float(losses.kernel_scale(3, 0.7))
  assert c == pytest.approx(2 * 3 * 0.49, rel=1e-6)  # C = 2 Z sigma^2 (pythae's convention)
  np.testing.assert_allclose(losses.mmd(jnp.asarray(z), jnp.asarray(p), kind, c), np_mmd(kind, z, p, c), rtol=1e-4,
                             atol=1e-6)
  near, far = (float(losses.mmd(jnp.asarray(z), jnp.asarray(p) + shift, kind, c)) for shift in (0.0, 5.0))
  assert far > near + 0.3  # samples of N(5, I) are farther from z ~ N(0, I) than samples of N(0, I)


def test_wae_objective_is_reconstruction_plus_weighted_mmd():
  family, params, x, hp = bound_family('wae', **{'wae.mmd_weight': 3.0, 'wae.kernel_bandwidth': 0.5})
  key = jax.random.key(7)
  loss, out = jax.jit(family.objective)(params, x, key, hp)
  z, logits = family.model.apply(params, x)
  z_prior = jax.random.normal(jax.random.split(key)[1], z.shape)  # the objective's second half of the key
  c = 2 * 4 * 0.25
  expected_mmd = np_mmd('imq', np.asarray(z), np.asarray(z_prior), c)
  np.testing.assert_allclose(out['mmd'], expected_mmd, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(loss, np.mean(np_bce(logits, np.asarray(x))) + 3.0 * expected_mmd, rtol=1e-5)


def test_info_vae_objective_is_eq_6_of_zhao_et_al():
  family, params, x, hp = bound_family('info_vae', **{'info_vae.alpha': 0.25, 'info_vae.lambda_': 10.0,
                                                      'info_vae.kernel': 'rbf'})
  key = jax.random.key(8)
  loss, out = jax.jit(family.objective)(params, x, key, hp)
  vae_key, prior_key = jax.random.split(key)
  mean, log_var = (np.asarray(a, np.float64) for a in family.model.apply(params, x, method=vae.Model.encode))
  eps = np.asarray(jax.random.normal(jax.random.split(vae_key)[1], mean.shape))
  z = mean + np.exp(0.5 * log_var) * eps
  logits = family.model.apply(params, jnp.asarray(z, jnp.float32), method=vae.Model.decode)
  recon = np.mean(np_bce(logits, np.asarray(x)))
  kl = np.mean(np.sum(0.5 * (mean ** 2 + np.exp(log_var) - 1 - log_var), axis=-1))
  mmd = np_mmd('rbf', z, np.asarray(jax.random.normal(prior_key, z.shape)), 2 * 4 * 1.0)
  np.testing.assert_allclose([out['recon'], out['kl'], out['mmd']], [recon, kl, mmd], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(loss, recon + (1 - 0.25) * kl + (0.25 + 10.0 - 1) * mmd, rtol=1e-4)


@pytest.mark.parametrize('regularizer', ['l2', 'gp'])
def test_rae_objective_is_eq_11_of_ghosh_et_al(regularizer):
  family, params, x, hp = bound_family('rae', **{'rae.regularizer': regularizer, 'rae.code_weight': 0.3,
                                                 'rae.decoder_weight': 0.02})
  loss, out = jax.jit(family.objective)(params, x, jax.random.key(9), hp)
  z, logits = family.model.apply(params, x)
  code = np.mean(0.5 * np.sum(np.asarray(z, np.float64) ** 2, axis=-1))
  if regularizer == 'l2':
    reg = sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in jax.tree.leaves(params['params']['decoder']))
  else:  # ||J_D(z)||_F^2 of each example from jax.jacfwd, averaged over the batch
    decode_one = lambda z_Z: family.model.apply(params, z_Z[None], method=rae.ae.Model.decode)[0]  # noqa: E731
    reg = np.mean([np.sum(np.asarray(jax.jacfwd(decode_one)(z_Z), np.float64) ** 2) for z_Z in z])
  np.testing.assert_allclose([out['code_l2'], out['decoder_reg']], [code, reg], rtol=1e-4)
  np.testing.assert_allclose(loss, np.mean(np_bce(logits, np.asarray(x))) + 0.3 * code + 0.02 * reg, rtol=1e-5)


def test_vamp_prior_log_density_is_a_logsumexp_of_the_pseudo_input_posteriors():
  family, params, x, hp = bound_family('vamp')
  u = np.clip(np.asarray(params['params']['pseudo_inputs']), 0, 1)  # Bernoulli: the pseudo-inputs clipped
  means, log_vars = (np.asarray(a, np.float64) for a in family.model.apply(params, jnp.asarray(u),
                                                                           method=vae.Model.encode))
  z = np.random.default_rng(1).normal(size=(5, 4))
  log_n = -0.5 * np.sum(np.log(2 * np.pi) + log_vars[None] + (z[:, None] - means[None]) ** 2 / np.exp(log_vars[None]),
                        axis=-1)  # 5 x K
  expected = logsumexp(log_n, axis=1) - np.log(10)
  np.testing.assert_allclose(vamp.log_prior(family.model, params, jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)
  # The one-sample KL of the objective is log q(z|x) - log p(z) at the objective's own sample.
  key = jax.random.key(4)
  _, out = jax.jit(family.objective)(params, x, key, hp)
  mean, log_var = (np.asarray(a, np.float64) for a in family.model.apply(params, x, method=vae.Model.encode))
  z_x = mean + np.exp(0.5 * log_var) * np.asarray(jax.random.normal(jax.random.split(jax.random.split(key)[0])[1],
                                                                    mean.shape))
  log_q = -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z_x - mean) ** 2 / np.exp(log_var), axis=-1)
  log_p = np.asarray(vamp.log_prior(family.model, params, jnp.asarray(z_x, jnp.float32)))
  np.testing.assert_allclose(out['kl'], np.mean(log_q - log_p), rtol=1e-4, atol=1e-5)


def test_gaussian_mixture_log_density_is_a_numpy_logsumexp_far_from_the_components_too():
  rng = np.random.default_rng(3)
  z, means, log_vars = 3 * rng.normal(size=(7, 5)), rng.normal(size=(11, 5)), 0.5 * rng.normal(size=(11, 5)) - 1
  log_n = -0.5 * np.sum(np.log(2 * np.pi) + log_vars[None] + (z[:, None] - means[None]) ** 2 / np.exp(log_vars[None]),
                        axis=-1)
  got = losses.gaussian_mixture_log_density(*(jnp.asarray(a, jnp.float32) for a in (z, means, log_vars)))
  np.testing.assert_allclose(got, logsumexp(log_n, axis=1) - np.log(11), rtol=2e-6)


def test_vamp_samples_come_from_the_mixture():
  family, params, _, _ = bound_family('vamp')
  z = np.asarray(vamp.make_sample_prior(family.model)(params, jax.random.key(3), 4000))
  means, log_vars = family.model.apply(params, method=vamp.Model.prior)
  mixture_mean = np.mean(np.asarray(means), axis=0)
  mixture_var = np.mean(np.exp(np.asarray(log_vars)) + np.asarray(means) ** 2, axis=0) - mixture_mean ** 2
  np.testing.assert_allclose(z.mean(0), mixture_mean, atol=4 * np.sqrt(mixture_var.max() / 4000))
  np.testing.assert_allclose(z.var(0), mixture_var, rtol=0.15)
  assert family.sample(params, jax.random.key(3), 5).shape == (5, 64)


def test_bounds_equal_their_definitions():
  log_w = np.random.default_rng(2).normal(scale=3.0, size=(3, 4, 5))  # M x K x B
  iwae = [np.log(np.mean(np.exp(log_w.reshape(12, 5)[:, b]))) for b in range(5)]
  mi = [np.mean([np.log(np.mean(np.exp(log_w[m, :, b]))) for m in range(3)]) for b in range(5)]
  ci = [0.3 * np.mean(log_w[0, :, b]) + 0.7 * np.log(np.mean(np.exp(log_w[0, :, b]))) for b in range(5)]
  np.testing.assert_allclose(miwae.iwae_bound(jnp.asarray(log_w.reshape(12, 5))), iwae, rtol=1e-5)
  np.testing.assert_allclose(miwae.miwae_bound(jnp.asarray(log_w)), mi, rtol=1e-5)
  np.testing.assert_allclose(miwae.ciwae_bound(jnp.asarray(log_w[0]), 0.3), ci, rtol=1e-5)
  assert np.all(np.array(mi) <= np.array(iwae) + 1e-6)  # MIWAE(M, K) <= IWAE(M K) (Jensen)


@pytest.mark.parametrize('name', ['miwae', 'ciwae'])
def test_miwae_and_ciwae_objectives_are_their_bounds_of_the_vae_log_weights(name):
  family, params, x, hp = bound_family(name, **{'ciwae.beta': 0.3} if name == 'ciwae' else {})
  key = jax.random.key(5)
  loss, out = jax.jit(family.objective)(params, x, key, hp)
  m = 2 if name == 'miwae' else 1
  log_weights = jax.jit(family.log_weights, static_argnums=3)
  log_w = np.asarray(log_weights(params, x, key, m * 3, hp), np.float64).reshape(m, 3, -1)
  if name == 'miwae':
    expected = np.mean(logsumexp(log_w, axis=1) - np.log(3), axis=0)
  else:
    expected = 0.3 * np.mean(log_w[0], axis=0) + 0.7 * (logsumexp(log_w[0], axis=0) - np.log(3))
  np.testing.assert_allclose(loss, -np.mean(expected), rtol=1e-5)
  np.testing.assert_allclose(out['neg_iwae'], -np.mean(logsumexp(log_w.reshape(m * 3, -1), axis=0) - np.log(m * 3)),
                             rtol=1e-5)


def test_piwae_decoder_follows_iwae_and_encoder_follows_miwae():
  family, params, x, hp = bound_family('piwae')
  key = jax.random.key(6)
  log_weights = family.log_weights

  def neg_iwae(p):
    return -jnp.mean(miwae.iwae_bound(log_weights(p, x, key, 6, hp)))

  def neg_miwae(p):
    return -jnp.mean(miwae.miwae_bound(log_weights(p, x, key, 6, hp).reshape(2, 3, -1)))

  grad = jax.jit(jax.grad(lambda p: family.objective(p, x, key, hp)[0]))(params)
  np.testing.assert_allclose(jax.jit(family.objective)(params, x, key, hp)[0], jax.jit(neg_iwae)(params), rtol=1e-6)
  for part, reference in (('decoder', neg_iwae), ('encoder', neg_miwae)):
    want = jax.jit(jax.grad(reference))(params)['params'][part]
    for got_leaf, want_leaf in zip(jax.tree.leaves(grad['params'][part]), jax.tree.leaves(want)):
      np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-4, atol=1e-6)
  assert piwae.stop_gradient_of(params, 'encoder').keys() == params.keys()


@pytest.mark.parametrize('name', FAMILIES)
def test_each_config_is_valid_on_digits_and_mnist(name):
  for arg in (None, 'mnist'):
    config = load_config(name, arg)
    config_lib.validate(config)
    assert config.model.name == name and config.model.hidden == (400,) and config.model.latent_dim == 20


def test_bad_values_are_one_line_config_errors():
  for name, dotted, value, match in (('wae', 'wae.kernel', 'laplace', 'wae.kernel'),
                                     ('wae', 'model.code_activation', 'sigmoid', 'unbounded'),
                                     ('rae', 'rae.regularizer', 'l1', 'rae.regularizer'),
                                     ('info_vae', 'info_vae.lambda_', -2.0, 'MMD weight'),
                                     ('vamp', 'vamp.num_components', 0, 'vamp.num_components'),
                                     ('miwae', 'vae.free_bits', 1.0, 'free_bits'),
                                     ('ciwae', 'ciwae.beta', 1.5, 'ciwae.beta')):
    config = tiny(name)
    section, field = dotted.split('.')
    config[section][field] = value
    with pytest.raises(config_lib.ConfigError, match=match) as error:
      config_lib.validate(config)
    assert '\n' not in str(error.value)


# ---- training ----


@pytest.mark.parametrize('name', FAMILIES)
def test_family_trains_on_digits_and_its_nll_is_at_most_its_negative_elbo(name):
  config = tiny(name)
  dataset = data.load(config.data)
  run, params, history = engine.fit(config, dataset)
  train_losses = [r['train/loss'] for r in history]
  assert np.all(np.isfinite(train_losses)) and train_losses[-1] < train_losses[0], train_losses
  family = models.get(config, dataset.shape)
  if name not in LIKELIHOOD_FAMILIES:
    assert family.log_weights is None and family.sample(params, jax.random.key(0), 3).shape == (3, 64)
    return
  x_test = jnp.asarray(dataset.x_test)
  nll = float(jnp.mean(metrics.make_importance_nll(family.log_weights, 100)(params, x_test, jax.random.key(0))))
  neg_elbo = float(jnp.mean(family.eval(params, x_test, jax.random.key(1), run.hp)['neg_elbo']))
  assert np.isfinite(nll) and nll <= neg_elbo, (nll, neg_elbo)


WEIGHTS = {'wae': 'wae.mmd_weight', 'info_vae': 'info_vae.lambda_', 'rae': 'rae.decoder_weight',
           'vamp': 'vae.kl_weight', 'miwae': 'vae.kl_weight', 'piwae': 'vae.kl_weight', 'ciwae': 'ciwae.beta'}


def test_a_sweep_over_each_familys_weight_is_one_group():
  for name, field in WEIGHTS.items():
    runs = sweep.members(tiny(name), sweep.product(sweep.axis(field, [0.5, 1.0]), sweep.axis('seed', [0, 1])))
    assert [len(g) for g in sweep.group(runs)] == [4], name


def test_a_wae_sweep_over_its_mmd_weight_trains_as_one_program(tmp_path):
  lines = []
  runs = sweep.product(sweep.axis('wae.mmd_weight', [1.0, 30.0]), sweep.axis('wae.kernel_bandwidth', [0.5, 2.0]))
  summaries = sweep.run_sweep(tiny('wae', epochs=2), runs, str(tmp_path), log=lines.append)
  assert any('4 models in one program' in line for line in lines), lines
  assert len(summaries) == 4 and len({round(s['train/loss'], 6) for s in summaries.values()}) == 4
