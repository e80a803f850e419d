"""Non-Gaussian latents: the categorical VAE with the Gumbel-softmax relaxation (gumbel_vae): its KL, samples,
annealed temperature and training on digits; the hyperspherical VAE (svae): Bessel functions against scipy, the
von Mises-Fisher sampler and KL against numeric integrals, training on digits."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from aelab import data, models
from aelab.nn import distributions, schedules
from aelab.train import engine
from conftest import load_config, small


def test_categorical_kl_to_uniform_by_hand():
  logits_BxNxK = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
  by_hand = 0.7 * math.log(3 * 0.7) + 0.2 * math.log(3 * 0.2) + 0.1 * math.log(3 * 0.1) + 0.0
  np.testing.assert_allclose(distributions.kl_categorical_uniform(logits_BxNxK), [by_hand], rtol=1e-5)
  one_hot = jnp.array([[[1.0, 0, 0], [0, 0, 1.0]]])
  np.testing.assert_allclose(distributions.categorical_log_prob(logits_BxNxK, one_hot),
                             [math.log(0.7) + math.log(1 / 3)], rtol=1e-5)


def test_gumbel_samples_follow_the_categorical_and_harden_as_the_temperature_falls():
  probs = jnp.array([0.6, 0.3, 0.1])
  logits_BxNxK = jnp.broadcast_to(jnp.log(probs), (20_000, 1, 3))
  exact = distributions.sample_categorical(jax.random.key(0), logits_BxNxK)
  np.testing.assert_allclose(exact.mean(axis=(0, 1)), probs, atol=0.015)  # Gumbel-max is exact
  for temperature, min_max in ((5.0, None), (0.1, 0.95)):
    soft = distributions.gumbel_softmax(jax.random.key(1), logits_BxNxK, temperature)
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)
    if min_max is not None:  # nearly one-hot, and the argmax follows probs as the exact sampler's does
      assert float(jnp.median(soft.max(-1))) > min_max
      argmax = jax.nn.one_hot(jnp.argmax(soft, -1), 3)
      np.testing.assert_allclose(argmax.mean(axis=(0, 1)), probs, atol=0.015)
  assert float(jnp.mean(distributions.gumbel_softmax(jax.random.key(1), logits_BxNxK, 5.0).max(-1))) < 0.5
  hard = distributions.gumbel_softmax(jax.random.key(2), logits_BxNxK[:4], 1.0, straight_through=True)
  assert set(np.unique(np.asarray(hard)).tolist()) <= {0.0, 1.0}
  grad = jax.grad(lambda lg: distributions.gumbel_softmax(jax.random.key(2), lg, 1.0, True)[:, 0, 0].sum())
  assert float(jnp.abs(grad(logits_BxNxK[:4])).sum()) > 0  # the relaxed sample's gradient goes through


def test_gumbel_temperature_schedule_by_hand():
  np.testing.assert_allclose(schedules.gumbel_temperature(0, 1.0, 0.5, 3e-5, 100), 1.0)
  np.testing.assert_allclose(schedules.gumbel_temperature(10_050, 1.0, 0.5, 3e-5, 100), math.exp(-0.3), rtol=1e-6)
  np.testing.assert_allclose(schedules.gumbel_temperature(10 ** 6, 1.0, 0.5, 3e-5, 100), 0.5)


def _gumbel_run():
  config = small(load_config('gumbel_vae'))
  dataset = data.load(config.data)
  run = engine.make_run(config, dataset.shape)
  return config, dataset, run


def test_gumbel_update_anneals_the_temperature_and_kl_weight_is_traced():
  config, dataset, run = _gumbel_run()
  init_state, train_step = engine.make_train_step(run, total_steps=100)
  x = jnp.asarray(dataset.x_train[:32], jnp.float32)
  state = jax.jit(init_state)(run.init_key, x[:1])
  step = jax.jit(train_step)
  _, m0 = step(state, x, jax.random.key(0), run.hp)
  _, m1 = step({**state, 'step': jnp.int32(20_000)}, x, jax.random.key(0), run.hp)
  np.testing.assert_allclose([m0['temperature'], m1['temperature']], [1.0, math.exp(-0.6)], rtol=1e-5)
  _, m2 = step(state, x, jax.random.key(0), {**run.hp, 'kl_weight': jnp.float32(3.0)})
  np.testing.assert_allclose(m2['loss'] - m0['loss'], 2.0 * m0['kl'], rtol=1e-4)
  assert step._cache_size() == 1  # a sweep over kl_weight or the temperature is one program
  assert set(models.hyperparams(config)) >= {'kl_weight', 'temperature', 'min_temperature', 'anneal_rate'}


def test_gumbel_vae_trains_and_its_nll_is_below_its_neg_elbo(tmp_path):
  summary = engine.train_and_evaluate(small(load_config('gumbel_vae'), epochs=3), str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 3 and np.isfinite(losses).all() and losses[2] < losses[0], losses
  assert summary['test/nll'] <= summary['test/neg_elbo'], summary
  assert 1.0 <= summary['test/perplexity'] <= 10.0


# ---- the hyperspherical VAE: von Mises-Fisher posterior ----


def test_log_bessel_iv_and_its_derivative_match_scipy():
  orders = [0.0, 0.5, 1.0, 1.5, 4.0, 4.5, 9.5, 31.5, 63.0]
  v_VxX, x_VxX = np.meshgrid(orders, np.geomspace(1e-2, 3e3, 50), indexing='ij')
  expected = np.log(scipy.special.ive(v_VxX, x_VxX)) + x_VxX
  got = jax.jit(distributions.log_bessel_iv)(jnp.asarray(v_VxX, jnp.float32), jnp.asarray(x_VxX, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
  # d/dx log I_v(x) = I_{v+1}(x) / I_v(x) + v / x (A&S 9.6.26)
  grad = jax.jit(jax.vmap(jax.grad(distributions.log_bessel_iv, argnums=1)))(
      jnp.asarray(v_VxX.ravel(), jnp.float32), jnp.asarray(x_VxX.ravel(), jnp.float32))
  v, x = v_VxX.ravel(), x_VxX.ravel()
  np.testing.assert_allclose(grad, scipy.special.ive(v + 1, x) / scipy.special.ive(v, x) + v / x, rtol=1e-3, atol=1e-4)


def _w_density_moments(dim, kappa):
  """``(log C_M(kappa), E[w], E[w^2])`` of ``w = mu . z`` under vMF by quadrature of its density on [-1, 1],
  ``|S^{M-2}| C_M(kappa) exp(kappa w) (1 - w^2)^((M-3)/2)``: no Bessel function involved."""
  def integral(power):
    fn = lambda w: w ** power * np.exp(kappa * (w - 1)) * (1 - w * w) ** ((dim - 3) / 2)  # noqa: E731
    return scipy.integrate.quad(fn, -1, 1, points=[1 - 1 / kappa], limit=200)[0]
  z0 = integral(0)
  log_c = -(distributions.log_sphere_area(dim - 1) + np.log(z0) + kappa)
  return log_c, integral(1) / z0, integral(2) / z0


@pytest.mark.parametrize('dim,kappa', [(3, 2.0), (5, 10.0), (10, 50.0), (20, 5.0)])
def test_vmf_kl_and_normalizer_equal_numeric_integrals(dim, kappa):
  log_c, mean_w, _ = _w_density_moments(dim, kappa)
  np.testing.assert_allclose(distributions.vmf_log_normalizer(jnp.float32(kappa), dim), log_c, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(distributions.vmf_mean_resultant(jnp.float32(kappa), dim), mean_w, rtol=1e-4)
  kl_numeric = log_c + kappa * mean_w + distributions.log_sphere_area(dim)  # E_q[log q] - log p(z)
  np.testing.assert_allclose(distributions.kl_vmf_uniform(jnp.float32(kappa), dim), kl_numeric, rtol=1e-4, atol=1e-4)
  assert kl_numeric > 0


@pytest.mark.parametrize('dim,kappa', [(3, 2.0), (20, 50.0)])
def test_vmf_samples_have_unit_norm_and_the_theoretical_mean_and_spread(dim, kappa):
  n = 10_000
  mu = jax.random.normal(jax.random.key(0), (dim,))
  mu_NxM = jnp.broadcast_to(mu / jnp.linalg.norm(mu), (n, dim))
  z = jax.jit(distributions.vmf_sample)(jax.random.key(1), mu_NxM, jnp.full((n,), kappa))
  np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
  _, mean_w, mean_w2 = _w_density_moments(dim, kappa)
  w = z @ mu_NxM[0]
  np.testing.assert_allclose([w.mean(), jnp.mean(w * w)], [mean_w, mean_w2], atol=0.015)
  np.testing.assert_allclose(z.mean(0), mean_w * mu_NxM[0], atol=0.02)  # E[z] = A_M(kappa) mu
  grad = jax.jit(jax.grad(lambda k: jnp.mean(distributions.vmf_sample(jax.random.key(1), mu_NxM[:64], k) @ mu)))
  assert float(grad(jnp.full((64,), kappa)).sum()) > 0  # a larger kappa pulls samples toward mu


def test_svae_kl_weight_is_traced(tmp_path):
  config = load_config('svae')
  family = models.get(config, 64)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 64)))
  hp = {k: jnp.float32(v) for k, v in models.hyperparams(config).items()}
  x = (jax.random.uniform(jax.random.key(1), (8, 64)) > 0.5).astype(jnp.float32)
  loss = jax.jit(family.objective)
  l1, m1 = loss(params, x, jax.random.key(2), hp)
  l2, _ = loss(params, x, jax.random.key(2), {**hp, 'kl_weight': jnp.float32(3.0)})
  np.testing.assert_allclose(l2 - l1, 2.0 * m1['kl'], rtol=1e-4)
  assert loss._cache_size() == 1 and float(m1['kappa']) >= 1.0


def test_svae_trains_and_its_nll_is_below_its_neg_elbo(tmp_path):
  config = small(load_config('svae'), epochs=3)
  config.eval.nll_samples = 20  # its vMF log-densities: 100 samples took 2.4 s of the test's final metrics, 20 1.3 s
  summary = engine.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 3 and np.isfinite(losses).all() and losses[2] < losses[0], losses
  assert summary['test/nll'] <= summary['test/neg_elbo'], summary
