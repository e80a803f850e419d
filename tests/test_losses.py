"""Losses against hand-computed values; the closed-form KL against a Monte Carlo estimate."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab.nn import losses
from aelab.models import vae


def test_mse_hand_computed():
  x_hat = jnp.array([[0.0, 1.0], [0.5, 0.5]])
  x = jnp.array([[1.0, 1.0], [0.0, 1.0]])
  np.testing.assert_allclose(losses.mse(x_hat, x), [0.5, 0.25])


def test_bce_with_logits_hand_computed():
  # -[x log s(l) + (1 - x) log(1 - s(l))]: l=0 gives log 2 for any x; l=2, x=1 gives log(1 + e^-2).
  logits = jnp.array([[0.0, 2.0, -3.0]])
  x = jnp.array([[0.3, 1.0, 0.0]])
  expected = math.log(2) + math.log1p(math.exp(-2)) + math.log1p(math.exp(-3))
  np.testing.assert_allclose(losses.bce_with_logits(logits, x), [expected], rtol=1e-6)


def test_bce_with_logits_is_stable_for_large_logits():
  out = losses.bce_with_logits(jnp.array([[100.0, -100.0]]), jnp.array([[0.0, 1.0]]))
  np.testing.assert_allclose(out, [200.0], rtol=1e-6)


def test_gaussian_nll_hand_computed():
  # -log N(1; 0, 1) = 0.5 log(2 pi) + 0.5; with variance 4: 0.5 log(2 pi 4) + 1/8.
  np.testing.assert_allclose(losses.gaussian_nll(jnp.zeros((1, 1)), jnp.ones((1, 1))),
                             [0.5 * math.log(2 * math.pi) + 0.5], rtol=1e-6)
  np.testing.assert_allclose(losses.gaussian_nll(jnp.zeros((1, 1)), jnp.ones((1, 1)), math.log(4.0)),
                             [0.5 * math.log(8 * math.pi) + 0.125], rtol=1e-6)


def test_kl_standard_normal_hand_computed():
  # KL(N(1, e^0) || N(0,1)) = 0.5 * 1 = 0.5 ; KL(N(0, e^1)||N(0,1)) = 0.5 (e - 1 - 1).
  kl = losses.kl_standard_normal(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))
  np.testing.assert_allclose(kl, [0.5 + 0.5 * (math.e - 2.0)], rtol=1e-6)
  assert float(losses.kl_standard_normal(jnp.zeros((1, 5)), jnp.zeros((1, 5)))[0]) == 0.0


def test_kl_closed_form_matches_monte_carlo():
  mean = jnp.array([[0.5, -1.0, 2.0]])
  log_var = jnp.array([[-1.0, 0.3, 0.8]])
  z = vae.reparameterize(jax.random.key(0), jnp.broadcast_to(mean, (400_000, 3)),
                         jnp.broadcast_to(log_var, (400_000, 3)))
  log_q = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + log_var + (z - mean) ** 2 / jnp.exp(log_var), -1)
  log_p = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + z ** 2, -1)
  mc, stderr = jnp.mean(log_q - log_p), jnp.std(log_q - log_p) / jnp.sqrt(z.shape[0])
  closed = losses.kl_standard_normal(mean, log_var)[0]
  assert abs(float(mc - closed)) < 4 * float(stderr), (float(mc), float(closed), float(stderr))


def test_reparameterize_moments():
  z = vae.reparameterize(jax.random.key(1), jnp.full((200_000, 1), 3.0), jnp.full((200_000, 1), math.log(0.25)))
  assert abs(float(z.mean()) - 3.0) < 0.01
  assert abs(float(z.std()) - 0.5) < 0.01


def test_l1_activity():
  np.testing.assert_allclose(losses.l1_activity(jnp.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])), [3.5, 0.0])


def test_kl_sparsity_hand_computed():
  z = jnp.array([[0.1, 0.5], [0.3, 0.5]])  # rho_hat = (0.2, 0.5)
  rho = 0.2
  expected = rho * math.log(rho / 0.5) + (1 - rho) * math.log((1 - rho) / 0.5)  # first unit is on target
  np.testing.assert_allclose(losses.kl_sparsity(z, rho), expected, rtol=1e-5)


@pytest.mark.parametrize('rho', [0.05, 0.3])
def test_kl_sparsity_is_minimal_at_target(rho):
  grid = jnp.linspace(0.01, 0.99, 99)
  values = jax.vmap(lambda a: losses.kl_sparsity(jnp.full((4, 1), a), rho))(grid)
  assert abs(float(grid[jnp.argmin(values)]) - rho) < 0.011
