"""DIP-VAE-I and -II (Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations, Sec. 3).

The VAE of ``aelab/models/vae.py`` plus a penalty that moves a covariance of the code towards the
identity: ``lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2`` (Eq. 6 and 7) with
``lambda_od = hp['dip_lambda_od']``, ``lambda_d = hp['dip_lambda_d']`` (``dip_vae.dip_lambda_od``,
``dip_vae.dip_lambda_d``). ``dip_vae.dip_type`` picks ``C``: ``i``, the covariance of the posterior means over the
batch, ``Cov[mu(x)]``; ``ii``, the covariance of the aggregate posterior, ``Cov[mu(x)] +
E[diag exp(log_var(x))]``, as disentanglement_lib's ``DIPVAE`` (which uses ``lambda_d = 10 lambda_od`` for
type i and ``lambda_d = lambda_od`` for type ii).
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check, check_choice
from aelab.models import vae
from aelab.models.family import Family

SECTION = 'dip_vae'
CONFIG = {
    'dip_type': ('ii', "'i': the covariance of the posterior means; 'ii': of the aggregate posterior (Kumar et al. "
                 '2018)'),
    'dip_lambda_od': (1.0, 'weight of the off-diagonal covariance penalty (Eq. 6)'),
    'dip_lambda_d': (1.0, 'weight of the diagonal covariance penalty (Eq. 6)'),
}
BUILDS_ON = ('vae',)  # the VAE's section and validation too
HYPERPARAMS = {**vae.HYPERPARAMS, 'dip_lambda_od': 'dip_vae.dip_lambda_od', 'dip_lambda_d': 'dip_vae.dip_lambda_d'}
TYPES = ('i', 'ii')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.dip_vae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  d = config.dip_vae
  check_choice(d.dip_type, TYPES, 'dip_vae.dip_type (DIP-VAE-I or -II)')
  check(d.dip_lambda_od >= 0 and d.dip_lambda_d >= 0, 'dip_vae.dip_lambda_od and dip_vae.dip_lambda_d must be >= 0.')
  vae.check_elbo_only(config)


def covariance(x_BxZ: jax.Array) -> jax.Array:
  """The batch covariance ``E[x x^T] - E[x] E[x]^T`` (biased, divides by ``B``): ``Z x Z``."""
  mean = jnp.mean(x_BxZ, axis=0)
  return x_BxZ.T @ x_BxZ / x_BxZ.shape[0] - jnp.outer(mean, mean)


def dip_penalty(cov_ZxZ: jax.Array, lambda_od: jax.Array, lambda_d: jax.Array) -> jax.Array:
  """``lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2`` (Kumar et al. 2018, Eq. 6)."""
  diag = jnp.diagonal(cov_ZxZ)
  off_diag = cov_ZxZ - jnp.diag(diag)
  return lambda_od * jnp.sum(jnp.square(off_diag)) + lambda_d * jnp.sum(jnp.square(diag - 1.0))


def make_regularizer(dip_type: str):
  """The DIP regularizer ``(mean_BxZ, log_var_BxZ, z_BxZ, hp) -> (penalty, {'dip': penalty})`` of type
  ``i`` or ``ii``. Raises ConfigError (a ValueError) for another type."""
  check_choice(dip_type, TYPES, 'dip_vae.dip_type (DIP-VAE-I or -II)')

  def regularizer(mean_BxZ, log_var_BxZ, z_BxZ, hp):
    cov = covariance(mean_BxZ)
    if dip_type == 'ii':
      cov = cov + jnp.diag(jnp.mean(jnp.exp(log_var_BxZ), axis=0))
    penalty = dip_penalty(cov, hp['dip_lambda_od'], hp['dip_lambda_d'])
    return penalty, {'dip': penalty}

  return regularizer


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The DIP-VAE's ``Family``: the VAE's, with the objective of this module."""
  return vae.family(config, data_shape, make_regularizer(config.dip_vae.dip_type))
