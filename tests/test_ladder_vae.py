"""The ladder VAE (ladder_vae): the precision-weighted merge and the Gaussian KL by hand, the closed-form KL
terms against a Monte Carlo estimate of E_q[log q - log p], and training on digits."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from aelab import models
from aelab.models import ladder_vae
from aelab.nn import distributions, losses
from aelab.train import engine
from conftest import load_config, small


def test_precision_weighted_merge_is_the_normalized_product_of_the_gaussians():
  mean, log_var = distributions.precision_weighted_merge(jnp.array([0.0]), jnp.array([0.0]), jnp.array([2.0]),
                                                         jnp.log(jnp.array([1 / 3])))
  np.testing.assert_allclose([mean[0], jnp.exp(log_var[0])], [(0 * 1 + 2 * 3) / 4, 1 / 4], rtol=1e-6)
  z = jnp.linspace(-3, 3, 7)[:, None]  # log N(z; a) + log N(z; b) - log N(z; merged) is constant in z
  gap = (-losses.gaussian_nll(0.0, z) - losses.gaussian_nll(2.0, z, math.log(1 / 3))
         + losses.gaussian_nll(mean[None], z, log_var[None]))
  np.testing.assert_allclose(gap, gap[0], rtol=1e-5)


def test_kl_between_gaussians_by_hand():
  kl = distributions.kl_gaussians(jnp.array([1.0, 0.0]), jnp.log(jnp.array([4.0, 1.0])), jnp.array([0.0, 0.0]),
                                  jnp.array([0.0, 0.0]))
  np.testing.assert_allclose(kl, 0.5 * (-math.log(4.0) + 4.0 + 1.0 - 1.0), rtol=1e-6)
  np.testing.assert_allclose(distributions.kl_gaussians(jnp.array([0.3]), jnp.array([0.2]), jnp.array([0.0]),
                                                        jnp.array([0.0])),
                             losses.kl_standard_normal(jnp.array([[0.3]]), jnp.array([[0.2]]))[0], rtol=1e-6)


def test_ladder_kl_terms_equal_a_monte_carlo_estimate_and_kl_weight_is_traced():
  config = load_config('ladder_vae')
  family = models.get(config, 64)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, 64)))
  x = (jax.random.uniform(jax.random.key(1), (4, 64)) > 0.5).astype(jnp.float32)
  infer = jax.jit(lambda x_, key: family.model.apply(params, x_, key, method=ladder_vae.Model.infer))
  terms = infer(jnp.tile(x, (4000, 1)), jax.random.key(2))
  assert terms['z'].shape == (16000, 30) and terms['kl'].shape == (2, 16000)
  mc_kl = jnp.mean((terms['log_q'] - terms['log_p']).reshape(4000, 4), axis=0)  # E_q[log q(z|x) - log p(z)]
  closed_form = jnp.mean(jnp.sum(terms['kl'], axis=0).reshape(4000, 4), axis=0)
  np.testing.assert_allclose(mc_kl, closed_form, rtol=0.02)
  hp = {k: jnp.float32(v) for k, v in models.hyperparams(config).items()}
  loss = jax.jit(family.objective)
  l1, m1 = loss(params, x, jax.random.key(3), hp)
  l2, _ = loss(params, x, jax.random.key(3), {**hp, 'kl_weight': jnp.float32(3.0)})
  np.testing.assert_allclose(l2 - l1, 2.0 * m1['kl'], rtol=1e-4)
  np.testing.assert_allclose(m1['kl'], m1['kl_1'] + m1['kl_2'], rtol=1e-5)
  assert loss._cache_size() == 1


def test_ladder_vae_trains_and_its_nll_is_below_its_neg_elbo(tmp_path):
  config = small(load_config('ladder_vae'), epochs=3)
  config.vae.kl_warmup_steps = 0  # the loss then is the negative ELBO throughout, and decreases
  summary = engine.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses_ = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses_) == 3 and np.isfinite(losses_).all() and losses_[2] < losses_[0], losses_
  assert summary['test/nll'] <= summary['test/neg_elbo'], summary
  assert summary['test/kl_1'] > 0 and summary['test/kl_2'] >= 0
