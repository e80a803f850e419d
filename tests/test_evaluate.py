"""Generative evaluation: active units, stable log-sum-exp, the importance-sampled NLL and IWAE bounds on
a trained VAE, and the standalone ``python -m aelab.evaluate``."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import evaluate, train
from aelab.models import vae
from conftest import load_config, small


def test_active_units_counts_dimensions_with_posterior_mean_variance_above_threshold():
  key = jax.random.key(0)
  stds = jnp.array([1.0, 0.3, 0.05, 0.0])  # variances 1, 0.09, 0.0025, 0
  mean_NxZ = jax.random.normal(key, (5000, 4)) * stds + 3.0
  assert int(evaluate.active_units(mean_NxZ)) == 2
  assert int(evaluate.active_units(mean_NxZ, threshold=0.001)) == 3


def test_logsumexp_accumulation_is_exact_and_finite_for_huge_log_weights():
  offsets = jnp.array([0.0, -1.0, -2.0, -30.0, -3.0])
  for base in (-1e4, 0.0, 1e4):  # exp overflows / underflows in float32 for |base| > ~88
    log_w = (base + offsets).reshape(5, 1)
    acc = jnp.full((1,), -jnp.inf)
    for chunk in (log_w[:2], log_w[2:4], log_w[4:]):
      acc = evaluate.logsumexp_accumulate(acc, chunk)
    expected = base + math.log(sum(math.exp(o) for o in offsets))
    np.testing.assert_allclose(float(acc[0]), expected, rtol=1e-6, atol=1e-3)
  assert bool(jnp.isinf(jnp.log(jnp.mean(jnp.exp(jnp.float32(-1e4) + offsets)))))  # the naive form fails


def test_importance_nll_masks_a_partial_last_chunk_and_pads_the_last_batch():
  # Constant log-weights c per example: -log mean exp(c) = -c for any k, if and only if the samples past
  # k in the last chunk are masked out (k=7 in chunks of 3 computes 9) and padded examples are dropped.
  def log_weights(params, x_BxD, key, s):
    return jnp.broadcast_to(x_BxD[:, 0], (s, x_BxD.shape[0])) * params
  nll = evaluate.make_importance_nll(log_weights, num_samples=7, batch_size=4, chunk_size=3)
  x = jnp.arange(10.0)[:, None] - 500.0
  np.testing.assert_allclose(nll(1.0, x, jax.random.key(0)), -x[:, 0], rtol=1e-6)
  with pytest.raises(ValueError, match='k >= 1'):
    evaluate.make_importance_nll(log_weights, num_samples=0)


@pytest.fixture(scope='module')
def trained_vae():
  """A VAE trained briefly on digits: (run, params, x_test)."""
  config = small(load_config('vae'), epochs=15)
  dataset = train.data.load(config.data)
  run = train.Run(config, dataset)
  state = run.init_state()
  x_train = jnp.asarray(dataset.x_train)
  for epoch in range(1, config.train.num_epochs + 1):
    state, _ = run.train_epoch(state, x_train, jax.random.fold_in(run.train_key, epoch), run.hp)
  return run, state['params'], jnp.asarray(dataset.x_test)


def test_iwae_bounds_increase_with_k_and_nll_is_below_neg_elbo(trained_vae):
  run, params, x_test = trained_vae
  log_weights = vae.make_log_weights(run.model, run.config)
  key = jax.random.key(1)
  neg_bound = {k: evaluate.make_importance_nll(log_weights, k)(params, x_test, key) for k in (1, 5, 50, 1000)}
  means = {k: float(jnp.mean(v)) for k, v in neg_bound.items()}
  neg_elbo = float(run.evaluate(params, x_test, run.hp)['neg_elbo'])  # closed-form KL, one sample
  # -L_1 (a one-sample ELBO estimate) >= -L_5 >= -L_50 >= -L_1000, with gaps well above the Monte Carlo
  # error of the test-set mean (standard error of the per-example differences).
  for lo, hi in ((1, 5), (5, 50), (50, 1000)):
    gap = neg_bound[lo] - neg_bound[hi]
    assert float(jnp.mean(gap)) > 3 * float(jnp.std(gap)) / math.sqrt(len(gap)), (lo, hi, means)
  assert abs(means[1] - neg_elbo) < 0.5, (means[1], neg_elbo)
  assert means[1000] < neg_elbo - 0.3, (means, neg_elbo)
  print(means, neg_elbo)


def test_nll_estimate_is_stable_across_seeds(trained_vae):
  run, params, x_test = trained_vae
  nll = evaluate.make_importance_nll(vae.make_log_weights(run.model, run.config), 1000)
  a, b = (float(jnp.mean(nll(params, x_test, jax.random.key(seed)))) for seed in (0, 1))
  print(a, b)
  assert a != b and abs(a - b) < 0.5, (a, b)


def test_standalone_evaluate_adds_nll_and_active_units_to_summary(tmp_path, capsys):
  config = small(load_config('vae'), epochs=1)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['test/nll_k'] == 100 and summary['test/nll'] < summary['test/neg_elbo']
  evaluate.main([f'--workdir={tmp_path}', '--k=200'])
  updated = json.load(open(tmp_path / 'summary.json'))
  assert updated['test/nll_k'] == 200 and updated['test/active_units'] == summary['test/active_units']
  assert updated['test/neg_elbo'] == pytest.approx(summary['test/neg_elbo'], rel=1e-6)
  assert abs(updated['test/nll'] - summary['test/nll']) < 1.0
  assert 'test/nll=' in capsys.readouterr().out
  with pytest.raises(SystemExit):
    evaluate.main([f'--workdir={tmp_path}', '--k=0'])
  with pytest.raises(FileNotFoundError, match='config.json'):
    evaluate.evaluate_workdir(str(tmp_path / 'missing'))
