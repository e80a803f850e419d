"""Superposition data (aelab.data.superposition, data.name=superposition) and sparse autoencoders
(aelab.models.sae): activations and their gradients, the decoder constraint, AuxK, the bias init, and
training that recovers the true features."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import data, models
from aelab.train import engine, sweep
from aelab.data import superposition
from aelab.models import sae
from conftest import load_config, small

TINY = dict(num_features=24, dim=12, probability=1 / 12, num_train=8192, num_test=1024, seed=3)


def _tiny(config, epochs: int = 3):
  config.data.superposition.update(TINY)
  config.model.latent_dim = 24
  config.sae.update(k=2, aux_k=8, dead_steps=50)
  config.train.batch_size = 128
  return small(config, epochs)


# ---- data ----


def test_superposition_data_is_sparse_seeded_and_keeps_unit_directions():
  config = load_config('sae_topk', 'superposition')
  config.data.superposition.update(TINY)
  ds = data.load(config.data)
  d_NxD = ds.extras['feature_directions']
  assert ds.x_train.shape == (8192, 12) and ds.x_test.shape == (1024, 12) and ds.shape == (12,) and ds.y_train is None
  np.testing.assert_allclose(np.linalg.norm(d_NxD, axis=1), 1.0, rtol=1e-5)
  assert d_NxD.shape == (24, 12)
  np.testing.assert_array_equal(data.load(config.data).x_train, ds.x_train)  # seeded: same fields, same data
  spec = superposition.spec(TINY)
  a = superposition.features(spec, 20_000, np.random.default_rng(0))
  assert abs(np.mean(a > 0) - 1 / 12) < 0.01 and a.min() >= 0 and a.max() <= 1
  config.data.superposition.seed = 4
  assert not np.allclose(data.load(config.data).extras['feature_directions'], d_NxD)


def test_superposition_bad_fields_raise_data_errors():
  config = load_config('sae_topk', 'superposition')
  config.data.superposition.probability = 1.5
  with pytest.raises(data.DataError, match='probability'):
    data.load(config.data)
  with pytest.raises(superposition.SuperpositionError, match='unknown fields'):
    superposition.spec({'features': 3})


def test_mean_max_cosine_is_one_for_the_truth_and_falls_for_other_directions():
  d = superposition.directions(superposition.spec(TINY))
  perm = np.random.default_rng(0).permutation(24)
  assert float(superposition.mean_max_cosine(d, 3.0 * d[perm])) == pytest.approx(1.0, abs=1e-6)
  assert float(superposition.mean_max_cosine(np.eye(4), -np.eye(4))) == pytest.approx(0.0, abs=1e-6)
  half = np.array([[1.0, 1.0], [0.0, 1.0]])
  assert float(superposition.mean_max_cosine(np.eye(2), half)) == pytest.approx((2 ** -0.5 + 1) / 2, rel=1e-6)
  with pytest.raises(ValueError, match='one D'):
    superposition.mean_max_cosine(np.eye(3), np.eye(4))


# ---- activations and gradients ----


def test_topk_and_batch_topk_keep_the_largest_activations():
  pre = jnp.array([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 0.1]])
  np.testing.assert_allclose(sae.topk(pre, 2), [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.1]])  # ReLU'd
  z, smallest = sae.batch_topk(pre, 2)  # the 4 largest of the batch: 3, 2, 0.5, 0.1
  np.testing.assert_allclose(z, [[3.0, 0.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.1]])
  assert float(smallest) == pytest.approx(0.1)
  z, _ = sae.batch_topk(pre, 1)  # per example 1 on average, but both kept ones may sit in one example
  np.testing.assert_allclose(z, [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_jumprelu_straight_through_gradients():
  pre = jnp.array([[0.95, 1.02, 2.0, 0.5]])
  threshold = jnp.array([[1.0, 1.0, 1.0, 1.0]])
  bandwidth = 0.2  # the kernel covers |pre - threshold| < 0.1: the first two entries
  np.testing.assert_allclose(sae.jumprelu(pre, threshold, bandwidth), [[0.0, 1.02, 2.0, 0.0]])
  g_pre, g_thr = jax.grad(lambda p, t: jnp.sum(sae.jumprelu(p, t, bandwidth)), argnums=(0, 1))(pre, threshold)
  np.testing.assert_allclose(g_pre, [[0.0, 1.0, 1.0, 0.0]])
  np.testing.assert_allclose(g_thr, [[-5.0, -5.0, 0.0, 0.0]], rtol=1e-6)  # -(theta / eps) K(.) = -1 / 0.2
  g_pre, g_thr = jax.grad(lambda p, t: jnp.sum(sae.step(p, t, bandwidth)), argnums=(0, 1))(pre, threshold)
  np.testing.assert_allclose(g_pre, 0.0)
  np.testing.assert_allclose(g_thr, [[-5.0, -5.0, 0.0, 0.0]], rtol=1e-6)
  # The threshold broadcast over a batch gets the batch's summed gradient.
  g = jax.grad(lambda t: jnp.sum(sae.step(jnp.concatenate([pre, pre]), t, bandwidth)))(threshold)
  np.testing.assert_allclose(g, [[-10.0, -10.0, 0.0, 0.0]], rtol=1e-6)


def test_geometric_median_ignores_an_outlier_and_parallel_gradient_is_removed():
  x = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [100.0, 100.0]])
  # The minimiser of the summed distances (scipy Nelder-Mead: 0.78868 = 1/2 + 1/(2 sqrt(3))); the mean is 20.4.
  np.testing.assert_allclose(sae.geometric_median(x), [0.5 + 0.5 / 3 ** 0.5] * 2, atol=1e-4)
  w = sae.unit_rows(jax.random.normal(jax.random.key(0), (5, 3)))
  g = sae.remove_parallel_gradient(jax.random.normal(jax.random.key(1), (5, 3)), w)
  np.testing.assert_allclose(jnp.sum(g * w, axis=1), 0.0, atol=1e-6)


def _state_and_step(config, x):
  family = models.get(config, x.shape[1])
  run = engine.make_run(config, (x.shape[1],))
  init_state, train_step = engine.make_train_step(run, 100)
  return family, init_state(jax.random.key(0), x[:1]), jax.jit(train_step), run.hp


def test_train_step_sets_the_bias_keeps_unit_rows_and_counts_dead_latents():
  config = _tiny(load_config('sae_topk', 'superposition'))
  config.sae.update(dead_steps=1, bias_init='mean')
  x = jnp.asarray(data.load(config.data).x_train[:128]) + 5.0
  _, state, train_step, hp = _state_and_step(config, x)
  state, metrics = train_step(state, x, jax.random.key(1), hp)
  np.testing.assert_allclose(jnp.linalg.norm(state['params']['W_dec'], axis=1), 1.0, rtol=1e-5)
  assert float(jnp.max(jnp.abs(state['params']['b_dec'] - jnp.mean(x, axis=0)))) < 0.01  # mean, then one Adam step
  counter = state['opt_state']['steps_since_fired']
  assert set(np.unique(counter)) <= {0, 1} and float(metrics['l0']) <= 3
  state, metrics = train_step(state, x, jax.random.key(2), hp)
  dead = np.asarray(counter >= 1)
  assert float(metrics['dead_fraction']) == pytest.approx(dead.mean())
  assert (float(metrics['aux']) > 0) == bool(dead.any())


def test_batchtopk_keeps_k_per_example_on_average_and_learns_its_evaluation_threshold():
  config = _tiny(load_config('sae_topk', 'superposition'))
  config.sae.activation = 'batchtopk'
  x = jnp.asarray(data.load(config.data).x_train[:128])
  family, state, train_step, hp = _state_and_step(config, x)
  for i in range(5):
    state, metrics = train_step(state, x, jax.random.key(i), hp)
    assert float(metrics['l0']) == pytest.approx(2.0)  # k * B kept over the batch
  threshold = float(state['params']['threshold'])
  z = family.encode(state['params'], x)
  assert threshold > 0 and float(jnp.min(jnp.where(z > 0, z, jnp.inf))) > threshold


def test_aux_loss_reaches_only_dead_latents():
  model = sae.build(_tiny(load_config('sae_topk', 'superposition')), 12)
  params = sae.init(model, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (16, 12))
  pre = sae.pre_activations(params, x)
  dead = jnp.arange(24) < 6
  residual = x - sae.decode(params, sae.topk(pre, 3))
  assert float(sae.aux_loss(model, params, pre, residual, jnp.zeros(24, bool))) == 0.0
  grads = jax.jit(jax.grad(lambda p: sae.aux_loss(model, p, sae.pre_activations(p, x), residual, dead)))(params)
  assert float(jnp.max(jnp.abs(grads['W_enc'][:, 6:]))) == 0.0 and float(jnp.max(jnp.abs(grads['W_enc'][:, :6]))) > 0
  assert float(jnp.max(jnp.abs(grads['W_dec'][6:]))) == 0.0


def test_configs_are_valid_and_round_trip_through_config_json():
  for name in ('sae_topk', 'sae_jumprelu'):
    for arg in (None, 'superposition', 'mnist'):
      config_lib.validate(load_config(name, arg))
  config = load_config('sae_topk', 'superposition')
  config.data.superposition.num_features = 60
  restored = config_lib.from_dict(json.loads(json.dumps(config.to_dict())))
  assert restored.data.superposition.num_features == 60 and restored.sae.activation == 'topk'
  assert restored.data.superposition.to_dict() == config.data.superposition.to_dict()


def test_config_validation_names_the_field():
  config = load_config('sae_topk', 'superposition')
  config.sae.k = 1000
  with pytest.raises(config_lib.ConfigError, match='sae.k'):
    config_lib.validate(config)
  config = load_config('sae_jumprelu')
  config.sae.activation = 'gelu'
  with pytest.raises(config_lib.ConfigError, match='sae.activation'):
    config_lib.validate(config)


# ---- training ----


def test_topk_sae_recovers_the_true_features(tmp_path):
  # 384 steps on a tiny problem (the README's study: 3900 steps on 96 features in 32 dimensions, MMCS 0.97).
  config = _tiny(load_config('sae_topk', 'superposition'), epochs=6)
  config.optimizer.learning_rate = 3e-3
  summary = engine.train_and_evaluate(config, str(tmp_path))
  assert summary == json.loads((tmp_path / 'summary.json').read_text())
  family = models.get(config, 12)
  at_init = superposition.mean_max_cosine(superposition.directions(superposition.spec(TINY)),
                                          family.init(jax.random.key(0), jnp.zeros((1, 12)))['W_dec'])
  assert summary['test/mmcs'] > max(0.8, float(at_init) + 0.2) and summary['test/dead_fraction'] < 0.1
  assert summary['test/l0'] <= 2 and summary['test/explained_variance'] > 0.6
  assert summary['test/nmse'] == pytest.approx(1 - summary['test/explained_variance'], abs=0.05)


def test_jumprelu_l0_weight_is_traced_and_lowers_l0(tmp_path):
  config = _tiny(load_config('sae_jumprelu', 'superposition'), epochs=2)
  config.sae.update(bandwidth=0.05, threshold_init=0.1)
  config.optimizer.learning_rate = 1e-2  # the log-threshold moves at most about this much per step (Adam)
  logs = []
  runs = sweep.axis('sae.l0_weight', [0.0, 0.1])
  summaries = sweep.run_sweep(config, runs, str(tmp_path), log=logs.append)
  assert any('1 groups' in line for line in logs)
  l0 = [summaries[sweep.run_name(r)]['test/l0'] for r in runs]
  assert l0[1] < 0.7 * l0[0], l0
