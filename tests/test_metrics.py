"""aelab.eval.metrics: split averages, active units, stable log-sum-exp, the importance-sampled NLL and IWAE
bounds on a trained VAE, codes of a split, linear probes, kNN and principal angles."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import data, models
from aelab.train import engine
from aelab.eval import evaluators, metrics
from conftest import load_config, small



def test_make_evaluate_averages_over_the_split_without_the_padding():
  # Per-example metric 2 x + 1 (1 on a padded row of zeros); 10 examples in batches of 4, the last padded
  # with 2 rows: the mean is 12 only if the padding is masked out and the sum divided by 10.
  evaluate = metrics.make_evaluate(lambda params, x, key, hp: {'m': x[:, 0] * params + 1.0}, batch_size=4)
  x = jnp.arange(10.0)[:, None] + 1.0
  np.testing.assert_allclose(evaluate(2.0, x, {})['m'], 2.0 * 5.5 + 1.0, rtol=1e-6)


def test_active_units_counts_dimensions_with_posterior_mean_variance_above_threshold():
  key = jax.random.key(0)
  stds = jnp.array([1.0, 0.3, 0.05, 0.0])  # variances 1, 0.09, 0.0025, 0
  mean_NxZ = jax.random.normal(key, (5000, 4)) * stds[None] + 3.0
  assert int(metrics.active_units(mean_NxZ)) == 2
  assert int(metrics.active_units(mean_NxZ, threshold=0.001)) == 3


def test_logsumexp_accumulation_is_exact_and_finite_for_huge_log_weights():
  offsets = jnp.array([0.0, -1.0, -2.0, -30.0, -3.0])
  for base in (-1e4, 0.0, 1e4):  # exp overflows / underflows in float32 for |base| > ~88
    log_w = (base + offsets).reshape(5, 1)
    acc = jnp.full((1,), -jnp.inf)
    for chunk in (log_w[:2], log_w[2:4], log_w[4:]):
      acc = metrics.logsumexp_accumulate(acc, chunk)
    expected = base + math.log(sum(math.exp(o) for o in offsets))
    np.testing.assert_allclose(float(acc[0]), expected, rtol=1e-6, atol=1e-3)
  assert bool(jnp.isinf(jnp.log(jnp.mean(jnp.exp(jnp.float32(-1e4) + offsets)))))  # the naive form fails


def test_importance_nll_masks_a_partial_last_chunk_and_pads_the_last_batch():
  # Constant log-weights c per example: -log mean exp(c) = -c for any k, if and only if the samples past
  # k in the last chunk are masked out (k=7 in chunks of 3 computes 9) and padded examples are dropped.
  def log_weights(params, x_BxD, key, s):
    return jnp.broadcast_to(x_BxD[:, 0], (s, x_BxD.shape[0])) * params
  nll = metrics.make_importance_nll(log_weights, num_samples=7, batch_size=4, chunk_size=3)
  x = jnp.arange(10.0)[:, None] - 500.0
  np.testing.assert_allclose(nll(1.0, x, jax.random.key(0)), -x[:, 0], rtol=1e-6)
  with pytest.raises(ValueError, match='k >= 1'):
    metrics.make_importance_nll(log_weights, num_samples=0)


@pytest.fixture(scope='module')
def trained_vae():
  """A VAE trained briefly on digits: (run, params, x_test)."""
  config = small(load_config('vae'), epochs=15)
  dataset = data.load(config.data)
  run, params, _ = engine.fit(config, dataset)
  return run, params, jnp.asarray(dataset.x_test)


def test_iwae_bounds_increase_with_k_and_nll_is_below_neg_elbo(trained_vae):
  run, params, x_test = trained_vae
  log_weights = run.family.log_weights
  key = jax.random.key(1)
  neg_bound = {k: metrics.make_importance_nll(log_weights, k)(params, x_test, key) for k in (1, 5, 50, 1000)}
  means = {k: float(jnp.mean(v)) for k, v in neg_bound.items()}
  evaluate = metrics.make_evaluate(run.family.eval, run.config.train.eval_batch_size)
  neg_elbo = float(evaluate(params, x_test, run.hp)['neg_elbo'])  # closed-form KL, one sample
  # -L_1 (a one-sample ELBO estimate) >= -L_5 >= -L_50 >= -L_1000, with gaps well above the Monte Carlo
  # error of the test-set mean (standard error of the per-example differences).
  for lo, hi in ((1, 5), (5, 50), (50, 1000)):
    gap = neg_bound[lo] - neg_bound[hi]
    assert float(jnp.mean(gap)) > 3 * float(jnp.std(gap)) / math.sqrt(len(gap)), (lo, hi, means)
  assert abs(means[1] - neg_elbo) < 0.5, (means[1], neg_elbo)
  assert means[1000] < neg_elbo - 0.3, (means, neg_elbo)


def test_nll_estimate_is_stable_across_seeds(trained_vae):
  run, params, x_test = trained_vae
  nll = metrics.make_importance_nll(run.family.log_weights, 1000)
  a, b = (float(jnp.mean(nll(params, x_test, jax.random.key(seed)))) for seed in (0, 1))
  assert a != b and abs(a - b) < 0.5, (a, b)


def _test_split_keys(family, config, params, x_test, hp) -> set[str]:
  evaluate = metrics.make_evaluate(family.eval, config.train.eval_batch_size, family.split_eval)
  return {f'test/{k}' for k in evaluate(params, x_test, hp)}


def test_final_metrics_of_a_vae_and_an_autoencoder(trained_vae):
  run, params, x_test = trained_vae
  vae_config = run.config.copy_and_resolve_references()
  vae_config.eval.final_metrics = True  # engine.fit turns them off
  dataset = data.load(vae_config.data)
  final = evaluators.final_metrics(run.family, vae_config, params, run.hp, dataset, x_test, num_samples=50)
  split_keys = _test_split_keys(run.family, run.config, params, x_test, run.hp)
  assert 'test/neg_elbo' in split_keys and set(final) == split_keys | {'test/active_units', 'test/nll', 'test/nll_k'}
  assert final['test/nll_k'] == 50
  codes = run.family.encode(params, x_test)
  assert final['test/active_units'] == int(metrics.active_units(codes)) and 0 < final['test/active_units'] <= 20
  nll = metrics.make_importance_nll(run.family.log_weights, 50)(params, x_test, jax.random.key(metrics.EVAL_SEED))
  np.testing.assert_allclose(final['test/nll'], float(jnp.mean(nll)), rtol=1e-5)
  assert final['test/nll'] < final['test/neg_elbo']
  default_k = evaluators.final_metrics(run.family, vae_config, params, run.hp, dataset, x_test)
  assert default_k['test/nll_k'] == vae_config.eval.nll_samples == 100
  config = load_config('ae')
  family = models.get(config, x_test.shape[1])
  ae_params = family.init(jax.random.key(0), x_test[:1])
  ae_final = evaluators.final_metrics(family, config, ae_params, {}, dataset, x_test)
  assert set(ae_final) == _test_split_keys(family, config, ae_params, x_test, {}) | {'test/active_units'}
  config.eval.final_metrics = False  # only the test split's metrics, as every epoch logs them
  assert set(evaluators.final_metrics(family, config, ae_params, {}, dataset, x_test)) == set(ae_final) - {
      'test/active_units'}


def test_evaluators_a_family_and_a_source_declare_run_after_the_registry_and_known_values_are_reused(trained_vae):
  run, params, x_test = trained_vae
  family = dataclasses.replace(run.family, evaluators=(
      lambda ctx: {'test/code_dims': ctx.codes_MxZ().shape[1], 'test/nll_k': -1},))
  dataset = dataclasses.replace(data.load(run.config.data),
                                extras={'evaluators': (lambda ctx: {'test/from_source': ctx.num_samples},)})
  config = run.config.copy_and_resolve_references()
  config.eval.final_metrics = True
  known = {'codes': np.zeros((len(x_test), 20), np.float32), 'test': {'test/neg_elbo': 123.0}}
  final = evaluators.final_metrics(family, config, params, run.hp, dataset, x_test, num_samples=5, known=known)
  assert final['test/code_dims'] == 20 and final['test/from_source'] == 5
  assert final['test/nll_k'] == -1  # the family's evaluator runs last: its key replaces the registry's
  assert final['test/active_units'] == 0  # from the known (constant) codes, not encoded again
  assert final['test/neg_elbo'] == 123.0 and 'test/recon_bce' not in final  # the known test metrics are kept
  assert known['test'] == {'test/neg_elbo': 123.0}  # the caller's dict is not changed


def test_encode_split_gives_codes_and_posterior_means():
  x = jax.random.uniform(jax.random.key(0), (7, 6))
  config = config_lib.base()
  config.model.update(hidden=(4,), latent_dim=3)
  family = models.get(config, 6)
  params = family.init(jax.random.key(1), x[:1])
  codes = jax.jit(metrics.encode_split, static_argnums=(0, 3))(family.encode, params, x, 3)  # 3 batches, padded
  np.testing.assert_allclose(codes, family.model.apply(params, x)[0], rtol=1e-6)
  config_lib.with_family(config, 'vae').model.likelihood = 'bernoulli'
  family = models.get(config, 6)
  params = family.init(jax.random.key(1), x[:1])
  mean, _ = family.model.apply(params, x, method=family.model.encode)
  np.testing.assert_allclose(metrics.encode_split(family.encode, params, x), mean, rtol=1e-6)


# ---- codes as features ----


def test_principal_angles_ignore_the_basis():
  a = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 3)))[0]
  mixed = a @ np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
  np.testing.assert_allclose(metrics.principal_angles_deg(a, mixed), 0.0, atol=1e-5)
  other = np.linalg.qr(np.random.default_rng(1).normal(size=(10, 10)))[0]
  assert metrics.principal_angles_deg(other[:, :3], other[:, 3:6]).min() > 89.0  # orthogonal subspaces
  with pytest.raises(ValueError, match='same D'):
    metrics.principal_angles_deg(a, a[:9])


def _blobs(n, labels, shift=10.0, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 5)) + shift * labels[:, None], labels


def test_linear_probe_separable_near_one_random_labels_near_chance():
  y = np.tile([0, 1], 300)
  z, _ = _blobs(600, y)
  assert metrics.linear_probe(z[:400], y[:400], z[400:], y[400:]) > 0.98
  noise = np.random.default_rng(1).normal(size=(2000, 5))
  y_random = np.random.default_rng(2).integers(0, 2, 2000)
  assert abs(metrics.linear_probe(noise[:1000], y_random[:1000], noise[1000:], y_random[1000:]) - 0.5) < 0.08


def test_knn_on_a_toy_case_and_errors():
  z_train = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
  y_train = np.array([0, 0, 0, 1, 1, 1])
  z_test, y_test = np.array([[0.05], [5.05], [4.0], [1.0]]), np.array([0, 1, 1, 1])
  assert metrics.knn_accuracy(z_train, y_train, z_test, y_test, k=3) == 0.75  # [1.0] is nearer class 0
  assert metrics.knn_accuracy(z_train, y_train, z_test, y_test, k=6) == 0.25  # 3:3 ties go to class 0
  with pytest.raises(ValueError, match='k=7'):
    metrics.knn_accuracy(z_train, y_train, z_test, y_test, k=7)
  with pytest.raises(ValueError, match='labels'):
    metrics.linear_probe(z_train, None, z_test, y_test)
  with pytest.raises(ValueError, match='NaN'):
    metrics.knn_accuracy(z_train * np.nan, y_train, z_test, y_test)
