"""Wasserstein autoencoder with an MMD penalty, WAE-MMD (Tolstikhin et al. 2018, Wasserstein Auto-Encoders,
Algorithm 2).

The deterministic autoencoder of ``aelab/models/ae.py`` (encoder ``z = f(x_tilde)``, decoder, reconstruction
cost ``c(x, g(z))`` of ``model.likelihood``) plus ``lambda * MMD^2(q(z), p(z))``, the unbiased estimate of the
squared maximum mean discrepancy between the batch's codes and as many samples of the prior ``p(z) = N(0, I)``
(``aelab.nn.losses.mmd``). ``lambda = hp['mmd_weight']`` (``wae.mmd_weight``); the kernel is inverse
multiquadratic ``C / (C + ||z - z'||^2)`` (``wae.kernel = 'imq'``, the paper's choice) or RBF
``exp(-||z - z'||^2 / C)``, with ``C = 2 * latent_dim * sigma^2`` and ``sigma = hp['kernel_bandwidth']``
(pythae's convention). The paper's squared Euclidean cost is ``model.likelihood = 'gaussian'`` (scaled) or
``'mse'`` (per pixel); the Bernoulli cross-entropy works too. Samples: decoded draws of ``N(0, I)``.
"""
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check, check_choice
from aelab.nn import losses
from aelab.models import ae, common
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'wae'
CONFIG = {
    'mmd_weight': (10.0, 'lambda, the weight of the MMD^2 between the codes and N(0, I) (Tolstikhin et al. 2018)'),
    'kernel': ('imq', "the MMD's kernel: 'imq' (inverse multiquadratic, the paper's) or 'rbf'"),
    'kernel_bandwidth': (1.0, 'sigma of the kernel scale C = 2 * latent_dim * sigma^2 (pythae convention)'),
}
BUILDS_ON = ('ae',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'mmd_weight': 'wae.mmd_weight', 'kernel_bandwidth': 'wae.kernel_bandwidth'}


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.wae`` and that the code can match ``N(0, I)``. Raises ConfigError naming the field."""
  w = config.wae
  check_choice(w.kernel, tuple(losses.KERNELS), 'wae.kernel')
  check(w.mmd_weight >= 0, f'wae.mmd_weight={w.mmd_weight} (lambda) must be >= 0.')
  check(w.kernel_bandwidth > 0, f'wae.kernel_bandwidth={w.kernel_bandwidth} (sigma) must be > 0.')
  check_mmd_batch(config)
  check(config.model.code_activation == 'identity', f'model.code_activation={config.model.code_activation!r}: '
        'the WAE matches its codes to N(0, I), so the code must be unbounded; set model.code_activation=identity.')


def check_mmd_batch(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when ``train.batch_size < 2`` (the unbiased MMD needs two codes)."""
  check(config.train.batch_size >= 2, f'train.batch_size={config.train.batch_size}: the MMD estimate needs '
        'at least 2 codes per batch; set train.batch_size >= 2.')


def mmd_to_prior(z_BxZ: jax.Array, key: jax.Array, kernel: str, bandwidth: jax.Array) -> jax.Array:
  """``MMD^2`` between the codes ``z_BxZ`` and ``B`` samples of ``N(0, I)`` drawn with ``key`` (a scalar)."""
  z_prior = jax.random.normal(key, z_BxZ.shape, z_BxZ.dtype)
  return losses.mmd(z_BxZ, z_prior, kernel, losses.kernel_scale(z_BxZ.shape[-1], bandwidth))


def make_objective(model: ae.Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``mean(recon) + hp['mmd_weight'] * MMD^2 +
  hp['penalty_weight'] * penalty``; the key's halves corrupt the input and draw the prior samples.
  Metrics: ``loss``, ``recon`` (units of ``model.likelihood``), ``mmd``."""
  recon_loss = common.reconstruction_loss(config.model)
  penalty = common.make_penalty(config, ae.make_encode(model, config))
  corrupt = common.corrupt_fn(config)
  kernel = config.wae.kernel

  def objective(params, x_BxD, key, hp):
    corrupt_key, prior_key = jax.random.split(key)
    x_tilde = corrupt(corrupt_key, x_BxD, hp)
    z, out = model.apply(params, x_tilde)
    recon = jnp.mean(recon_loss(out, x_BxD))
    divergence = mmd_to_prior(z, prior_key, kernel, hp['kernel_bandwidth'])
    pen = penalty(params, x_tilde, z, hp)
    loss = recon + hp['mmd_weight'] * divergence + hp['penalty_weight'] * pen
    return loss, common.with_penalty(config, {'loss': loss, 'recon': recon, 'mmd': divergence}, pen)

  return objective


def sample_prior(config: ml_collections.ConfigDict, key: jax.Array, num: int) -> jax.Array:
  """``num`` samples of the prior ``p(z) = N(0, I)``: ``num x latent_dim``."""
  return jax.random.normal(key, (num, config.model.latent_dim))


def with_gaussian_prior(fam: Family, config: ml_collections.ConfigDict) -> Family:
  """``fam`` with ``sample_prior`` (``N(0, I)``) and ``sample`` (its decoded draws, ``x_NxD``)."""
  return dataclasses.replace(fam, sample_prior=lambda key, num: sample_prior(config, key, num),
                             sample=lambda params, key, num: fam.decode(params, sample_prior(config, key, num)))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The WAE's ``Family``: the autoencoder's, with the WAE-MMD objective and samples of ``N(0, I)``."""
  fam = ae.family(config, data_shape)
  return with_gaussian_prior(dataclasses.replace(fam, objective=make_objective(fam.model, config)), config)
