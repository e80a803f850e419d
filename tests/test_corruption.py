"""Corruption statistics, and that the reconstruction target stays clean."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as aelab_config
from aelab.nn import corruption, losses
from aelab import models

X = jnp.full((400, 500), 0.5)


def test_masking_rate_and_values():
  x_tilde = corruption.masking(jax.random.key(0), X, 0.3)
  zeros = float(jnp.mean(x_tilde == 0.0))
  assert abs(zeros - 0.3) < 0.005
  assert bool(jnp.all((x_tilde == 0.0) | (x_tilde == 0.5)))


def test_gaussian_noise_moments_and_clipping():
  noise = corruption.gaussian(jax.random.key(0), X, 0.1, clip=False) - X
  assert abs(float(noise.mean())) < 0.001
  assert abs(float(noise.std()) - 0.1) < 0.001
  clipped = corruption.gaussian(jax.random.key(0), X, 2.0)
  assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0


def test_salt_and_pepper_rate_and_balance():
  x_tilde = corruption.salt_and_pepper(jax.random.key(0), X, 0.2)
  salt, pepper = float(jnp.mean(x_tilde == 1.0)), float(jnp.mean(x_tilde == 0.0))
  assert abs(salt - 0.1) < 0.004 and abs(pepper - 0.1) < 0.004
  assert abs(float(jnp.mean(x_tilde == 0.5)) - 0.8) < 0.005


def test_different_keys_give_different_noise():
  a = corruption.masking(jax.random.key(0), X, 0.3)
  b = corruption.masking(jax.random.key(1), X, 0.3)
  assert not bool(jnp.all(a == b))
  np.testing.assert_array_equal(a, corruption.masking(jax.random.key(0), X, 0.3))


def test_unknown_corruption_raises():
  with pytest.raises(ValueError, match='salt_and_pepper'):
    corruption.get('dropout')


@pytest.mark.parametrize('family', ['ae', 'vae'])
def test_target_stays_clean(family):
  """With a decoder whose output ignores the code (zero weights and biases: output 0), the
  reconstruction term must equal the loss of 0 against the clean x, however strong the corruption."""
  config = aelab_config.base(family)
  config.model.update(hidden=(), latent_dim=2, output_activation='identity',
                      likelihood='mse' if family == 'ae' else 'gaussian')
  config.corruption.update(name='masking', rate=0.9)
  fam = models.get(config, 6)
  x = jax.random.uniform(jax.random.key(0), (5, 6))
  params = fam.init(jax.random.key(1), x[:1])
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.zeros_like(p) if 'decoder' in jax.tree_util.keystr(path) else p, params)
  hp = {k: jnp.asarray(v) for k, v in models.hyperparams(config).items()}
  recon = fam.objective(params, x, jax.random.key(2), hp)[1]['recon']
  zeros = jnp.zeros_like(x)
  expected = losses.mse(zeros, x) if family == 'ae' else losses.gaussian_nll(zeros, x)
  np.testing.assert_allclose(recon, jnp.mean(expected), rtol=1e-6)
