"""MIWAE: the multiply importance weighted autoencoder (Rainforth et al. 2018, Tighter Variational Bounds are Not
Necessarily Better, Sec. 4).

The VAE of ``aelab/models/vae.py`` trained on the average of ``M`` independent IWAE bounds of ``K`` samples each:

``MIWAE(M, K) = 1/M sum_m log (1/K sum_k w_mk)``,  ``w_mk = p(x, z_mk) / q(z_mk | x)``,  ``z_mk ~ q(z|x)``

with ``M = miwae.num_estimates`` and ``K = vae.num_samples``. ``M = 1`` is the IWAE bound (Burda et al. 2016),
``K = 1`` the ELBO averaged over ``M`` samples. The log-weights are the VAE's (``vae.make_log_weights``, with
``hp['kl_weight']``); the ``M K`` samples are drawn at once. The bounds of this module and of ``piwae`` and
``ciwae`` are pure functions of the ``M x K x B`` log-weights (:func:`miwae_bound`, :func:`iwae_bound`,
:func:`ciwae_bound`). Metrics: ``loss``, ``neg_iwae`` (``-IWAE(M K)`` of the same samples) and ``neg_elbo``
(minus their mean log-weight).
"""
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.models import vae
from aelab.models.family import Family

SECTION = 'miwae'
CONFIG = {'num_estimates': (8, 'M, the number of IWAE estimates of vae.num_samples = K samples each that are '
                             'averaged (Rainforth et al. 2018)')}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = dict(vae.HYPERPARAMS)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.miwae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  m = config.miwae.num_estimates
  check(isinstance(m, int) and m >= 1, f'miwae.num_estimates={m} (M) must be an integer >= 1.')
  check_bound_only(config)


def check_bound_only(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when a VAE option that a bound of log-weights has no place for is set (free bits,
  annealed capacity)."""
  check(config.vae.free_bits == 0, f'vae.free_bits applies to the ELBO\'s KL term; model.name='
        f'{config.model.name} trains on a bound of importance weights: set vae.free_bits=0.')
  vae.check_elbo_only(config)


def iwae_bound(log_w_KxB: jax.Array) -> jax.Array:
  """``log (1/K sum_k w_k)`` per example (shape ``B``), nats (Burda et al. 2016, Eq. 8)."""
  return vae.log_mean_exp(log_w_KxB, axis=0)


def miwae_bound(log_w_MxKxB: jax.Array) -> jax.Array:
  """``1/M sum_m log (1/K sum_k w_mk)`` per example (shape ``B``), nats (Rainforth et al. 2018, Sec. 4)."""
  return jnp.mean(vae.log_mean_exp(log_w_MxKxB, axis=1), axis=0)


def ciwae_bound(log_w_KxB: jax.Array, beta: jax.Array | float) -> jax.Array:
  """``beta ELBO + (1 - beta) IWAE``: ``beta 1/K sum_k log w_k + (1 - beta) log (1/K sum_k w_k)`` per example
  (shape ``B``), nats (Rainforth et al. 2018, Sec. 4, CIWAE)."""
  return beta * jnp.mean(log_w_KxB, axis=0) + (1.0 - beta) * iwae_bound(log_w_KxB)


def make_bound_objective(log_weights: Callable, num_estimates: int, num_samples: int, bound: Callable) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``-mean_B bound(log_w_MxKxB, hp)`` with the
  ``M K`` log-weights ``log_weights(params, x_BxD, key, M K, hp)`` reshaped to ``M x K x B``, nats per
  example. Metrics: ``loss``, ``neg_iwae`` (``-IWAE(M K)``), ``neg_elbo`` (``-mean log w``)."""
  m, k = num_estimates, num_samples

  def objective(params, x_BxD, key, hp):
    log_w = log_weights(params, x_BxD, key, m * k, hp)
    loss = -jnp.mean(bound(log_w.reshape(m, k, -1), hp))
    neg_iwae, neg_elbo = -jnp.mean(iwae_bound(log_w)), -jnp.mean(log_w)
    return loss, {'loss': loss, 'neg_iwae': neg_iwae, 'neg_elbo': neg_elbo}

  return objective


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The MIWAE's ``Family``: the VAE's, trained on ``MIWAE(M, K)``."""
  fam = vae.family(config, data_shape)
  objective = make_bound_objective(fam.log_weights, config.miwae.num_estimates, config.vae.num_samples,
                                   lambda log_w_MxKxB, hp: miwae_bound(log_w_MxKxB))
  return dataclasses.replace(fam, objective=objective)
