"""beta-TCVAE (Chen et al. 2018, Isolating Sources of Disentanglement in Variational Autoencoders).

The VAE of ``aelab/models/vae.py`` whose KL term is decomposed into index-code mutual information, total
correlation ``TC = KL(q(z) || prod_j q(z_j))`` and dimension-wise KL, with the TC weighted by
``beta = hp['tc_weight']`` (``beta_tcvae.tc_weight``) and the other two by 1 (Chen et al., Eq. 4 with
``alpha = gamma = 1``): ``loss = recon + kl_weight * KL + (beta - 1) * TC``, as disentanglement_lib's
``BetaTCVAE``. ``TC`` is the minibatch-weighted sampling estimate (Chen et al., Eq. 7 and Appendix C.1) on
the batch's own samples ``z_i ~ q(z|x_i)``::

  log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N M),  log q(z_ij) ~ logsumexp_m log q(z_ij|x_m) - log(N M)

without the constant ``(Z - 1) log(N M)`` of the difference (it needs the dataset size ``N`` and does
not change the gradient), as disentanglement_lib computes it. ``tc_weight = 1`` is the plain VAE.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.nn import losses
from aelab.models import vae
from aelab.models.family import Family

SECTION = 'beta_tcvae'
CONFIG = {'tc_weight': (6.0, 'beta, the weight of the total correlation (Chen et al. 2018, Eq. 4; 1: the VAE)')}
BUILDS_ON = ('vae',)  # the VAE's section and validation too
HYPERPARAMS = {**vae.HYPERPARAMS, 'tc_weight': 'beta_tcvae.tc_weight'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.beta_tcvae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  t = config.beta_tcvae.tc_weight
  check(t >= 0, f'beta_tcvae.tc_weight={t} (beta) must be >= 0.')
  vae.check_elbo_only(config)


def log_density_pairs(z_BxZ: jax.Array, mean_BxZ: jax.Array, log_var_BxZ: jax.Array) -> jax.Array:
  """``log q(z_ij | x_m)`` for every pair of samples ``i`` and posteriors ``m``: ``B x B x Z``, nats."""
  return losses.gaussian_log_density(z_BxZ[:, None, :], mean_BxZ[None, :, :], log_var_BxZ[None])


def total_correlation(z_BxZ: jax.Array, mean_BxZ: jax.Array, log_var_BxZ: jax.Array) -> jax.Array:
  """Minibatch-weighted estimate of ``TC = E_q(z)[log q(z) - sum_j log q(z_j)]``, nats, up to the
  constant ``(Z - 1) log(N M)`` (see the module docstring); a scalar."""
  log_q_BxBxZ = log_density_pairs(z_BxZ, mean_BxZ, log_var_BxZ)
  log_qz = jax.nn.logsumexp(jnp.sum(log_q_BxBxZ, axis=2), axis=1)
  log_qz_product = jnp.sum(jax.nn.logsumexp(log_q_BxBxZ, axis=1), axis=1)
  return jnp.mean(log_qz - log_qz_product)


def regularizer(mean_BxZ, log_var_BxZ, z_BxZ, hp):
  """``((tc_weight - 1) * TC, {'tc': TC})``."""
  tc = total_correlation(z_BxZ, mean_BxZ, log_var_BxZ)
  return (hp['tc_weight'] - 1.0) * tc, {'tc': tc}


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The beta-TCVAE's ``Family``: the VAE's, with the objective of this module."""
  return vae.family(config, data_shape, regularizer)
