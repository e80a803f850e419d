"""aelab.models.vqvae: nearest-code quantization and its straight-through gradient, perplexity, the EMA
codebook update, dead-code restarts, the family's update and codebook metrics, and its config errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aelab import config as config_lib
from aelab import data, models
from aelab.train import engine
from aelab.models import vqvae
from conftest import load_config, small


def test_quantize_picks_the_nearest_code_and_passes_the_gradient_straight_through():
  codebook = jnp.array([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
  z_e = jnp.array([[[0.1, -0.1], [0.9, 1.4]], [[-1.5, 0.0], [5.0, 5.0]]])  # B=2 x N=2 x Z=2
  z_q, e, indices = vqvae.quantize(z_e, codebook)
  np.testing.assert_array_equal(indices, [[0, 1], [2, 1]])
  np.testing.assert_allclose(z_q, codebook[indices], atol=1e-6)
  np.testing.assert_allclose(e, codebook[indices])
  w = jax.random.normal(jax.random.key(0), z_e.shape)
  grad_z_e, grad_codebook = jax.grad(lambda z, c: jnp.sum(vqvae.quantize(z, c)[0] * w), argnums=(0, 1))(z_e, codebook)
  np.testing.assert_allclose(grad_z_e, w, rtol=1e-6)  # identity: straight-through
  np.testing.assert_allclose(grad_codebook, 0.0)  # the decoder's gradient does not reach the codebook


def test_perplexity_counts_effectively_used_codes():
  np.testing.assert_allclose(vqvae.perplexity(jnp.full((16,), 3.0)), 16.0, rtol=1e-5)
  np.testing.assert_allclose(vqvae.perplexity(jnp.array([0.0, 7.0, 0.0])), 1.0, rtol=1e-6)
  np.testing.assert_allclose(vqvae.perplexity(jnp.array([5.0, 5.0, 0.0, 0.0])), 2.0, rtol=1e-5)
  p = np.array([0.5, 0.25, 0.25])
  np.testing.assert_allclose(vqvae.perplexity(jnp.asarray(p * 8)), np.exp(-np.sum(p * np.log(p))), rtol=1e-5)


def test_ema_update_moves_codes_to_the_means_of_their_vectors():
  codebook = jnp.array([[0.0, 0.0], [10.0, 10.0], [3.0, -3.0]])
  state = vqvae.init_codebook_state(codebook, dead_code_steps=0)
  z = jnp.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]])
  one_hot = jax.nn.one_hot(vqvae.nearest_code(z, codebook), 3)  # codes 0, 0, 1
  new, state = vqvae.ema_update(state, z, one_hot, decay=0.5, eps=0.0)
  np.testing.assert_allclose(state['cluster_size'], [0.5 + 1.0, 0.5 + 0.5, 0.5])
  np.testing.assert_allclose(state['embed_sum'], [[2.0, 3.0], [9.5, 9.5], [1.5, -1.5]])
  np.testing.assert_allclose(new, [[2.0 / 1.5, 2.0], [9.5, 9.5], [3.0, -3.0]], rtol=1e-6)  # unused code 2 stays
  for _ in range(200):  # a fixed assignment: the EMA converges to each cluster's mean
    new, state = vqvae.ema_update(state, z, one_hot, decay=0.9)
  np.testing.assert_allclose(new[:2], [[2.0, 3.0], [9.0, 9.0]], rtol=1e-3)


def test_dead_codes_restart_at_encoder_outputs_and_live_codes_stay():
  codebook = jnp.arange(8.0).reshape(4, 2)
  state = {**vqvae.init_codebook_state(codebook, 0), 'unused_steps': jnp.array([0, 1, 5, 1], jnp.int32)}
  z = 100.0 + jnp.arange(20.0).reshape(10, 2)
  used = jnp.array([3.0, 0.0, 0.0, 0.0])
  new, state, num = vqvae.restart_dead_codes(jax.random.key(0), codebook, state, z, used, dead_code_steps=3)
  np.testing.assert_array_equal(state['unused_steps'], [0, 2, 0, 2])  # code 2: 6 >= 3 steps unused, restarted
  assert int(num) == 1
  np.testing.assert_array_equal(np.asarray(new)[[0, 1, 3]], np.asarray(codebook)[[0, 1, 3]])
  assert any(np.array_equal(new[2], row) for row in np.asarray(z))
  np.testing.assert_allclose(state['embed_sum'][2], new[2])
  assert float(state['cluster_size'][2]) == 1.0


def _update(config, fields):
  """Sets each field in ``config.vqvae`` when the VQ-VAE's section has it, else in ``config.model``."""
  for name, value in fields.items():
    (config.vqvae if name in config.vqvae else config.model)[name] = value


def _family_and_batch(**fields):
  config = load_config('vqvae')
  _update(config, fields)
  family = models.get(config, (8, 8, 1))
  hp = {k: jnp.float32(v) for k, v in models.hyperparams(config).items()}
  x = jnp.asarray(data.load(config.data).x_train[:64])
  return config, family, hp, x


def _one_step(family, config, x, hp):
  init_opt_state, train_step = family.make_update(optax.adam(1e-3))
  params = family.init(jax.random.key(0), x[:1])
  state = {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': init_opt_state(params)}
  new_state, metrics = jax.jit(train_step)(state, x, jax.random.key(1), hp)
  return params, new_state, metrics


def test_first_step_initialises_the_codebook_from_encoder_outputs():
  config, family, hp, x = _family_and_batch()
  params, state, metrics = _one_step(family, config, x, hp)
  k = config.vqvae.codebook_size
  assert set(models.hyperparams(config)) >= {'commitment_weight'} and family.sample is None
  z_e = family.model.apply(params, x, method=vqvae.Model.encode).reshape(-1, config.vqvae.code_dim)
  assert z_e.shape == (64 * 2 * 2, config.vqvae.code_dim)  # 8x8 digits, two stride-2 layers: a 2x2 grid
  codebook = state['params']['params']['codebook']
  # every code that no vector picked is now one of the batch's encoder outputs (every code starts dead)
  restarted = int(metrics['codes_restarted'])
  assert restarted >= k - 4 * 64 and restarted > k // 2
  from_data = [np.min(np.max(np.abs(np.asarray(z_e) - c), axis=1)) < 1e-5 for c in np.asarray(codebook)]
  assert sum(from_data) == restarted
  assert np.all(np.asarray(state['opt_state']['vq']['unused_steps']) == 0)
  # EMA: no codebook term in the loss, so the gradient step leaves the codebook to the EMA
  assert float(metrics['loss']) == pytest.approx(float(metrics['recon'] + 0.25 * metrics['commitment']), rel=1e-5)


def test_gradient_codebook_without_ema_or_restarts():
  config, family, hp, x = _family_and_batch(codebook_ema=0.0, dead_code_steps=0)
  params, state, metrics = _one_step(family, config, x, hp)
  assert float(metrics['codes_restarted']) == 0.0
  assert float(metrics['loss']) == pytest.approx(
      float(metrics['recon'] + 0.25 * metrics['commitment'] + metrics['codebook_loss']), rel=1e-5)
  before, after = params['params']['codebook'], state['params']['params']['codebook']
  moved = np.any(np.asarray(before) != np.asarray(after), axis=1)
  assert 0 < moved.sum() < config.vqvae.codebook_size  # Adam moves only the codes that were picked


def test_commitment_weight_is_traced():
  config, family, hp, x = _family_and_batch()
  _, _, m1 = _one_step(family, config, x, hp)
  _, _, m2 = _one_step(family, config, x, {**hp, 'commitment_weight': jnp.float32(2.0)})
  assert float(m2['loss'] - m1['loss']) == pytest.approx(1.75 * float(m1['commitment']), rel=1e-4)


def test_vqvae_trains_on_digits_and_reports_codebook_usage():
  config = small(load_config('vqvae'), epochs=3)
  dataset = data.load(config.data)
  run, params, history = engine.fit(config, dataset)
  k = config.vqvae.codebook_size
  assert history[-1]['test/recon_mse'] < history[0]['test/recon_mse']
  assert 1.0 <= history[-1]['test/codebook_perplexity'] <= k
  usage = history[-1]['test/codebook_usage']
  assert 0.5 <= usage <= 1.0 and usage * k == pytest.approx(round(usage * k))
  assert history[-1]['test/codebook_perplexity'] <= usage * k + 1e-3  # perplexity <= number of used codes
  x = jnp.asarray(dataset.x_test[:5])
  z = run.family.encode(params, x)
  codebook = np.asarray(params['params']['codebook'])
  assert z.shape == (5, 2 * 2 * config.vqvae.code_dim)
  assert all(np.min(np.abs(codebook - v).max(axis=1)) < 1e-6 for v in np.asarray(z).reshape(-1, codebook.shape[1]))
  x_hat = run.family.reconstruct(params, x, jax.random.key(0), run.hp)[1]
  np.testing.assert_allclose(run.family.decode(params, z), x_hat, atol=1e-5)


def test_mlp_vectors_layout():
  config, family, hp, x = _family_and_batch(net='mlp', code_layout='vectors', latent_dim=16, code_dim=4,
                                            hidden=(32,))
  params = family.init(jax.random.key(0), x[:1])
  assert family.encode(params, x).shape == (64, 16)
  assert family.model.apply(params, x, method=vqvae.Model.encode).shape == (64, 4, 4)
  _, state, metrics = _one_step(family, config, x, hp)
  assert np.isfinite(float(metrics['loss'])) and 1.0 <= float(metrics['perplexity']) <= config.vqvae.codebook_size


@pytest.mark.parametrize('change, message', [
    (dict(net='mlp', code_layout='spatial'), 'needs model.net=conv'),
    (dict(net='mlp', code_layout='vectors', latent_dim=10, code_dim=4), 'multiple of vqvae.code_dim'),
    (dict(codebook_ema=1.0), 'codebook_ema'),
    (dict(code_layout='grid'), 'vqvae.code_layout'),
    (dict(codebook_size=1), 'codebook_size'),
])
def test_config_errors(change, message):
  config = load_config('vqvae')
  _update(config, change)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)
