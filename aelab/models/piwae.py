"""PIWAE: the partially importance weighted autoencoder (Rainforth et al. 2018, Tighter Variational Bounds are
Not Necessarily Better, Sec. 4).

The VAE of ``aelab/models/vae.py`` whose decoder (generative network) follows the gradient of the IWAE bound of
all ``M K`` samples and whose encoder (inference network) follows that of ``MIWAE(M, K)`` of the same samples
(``M = piwae.num_estimates``, ``K = vae.num_samples``). One loss gives both: with ``E`` the encoder's and ``D``
the decoder's parameters and ``sg`` the stop-gradient,

``loss = -IWAE(M K)[sg(E), D] - MIWAE(M, K)[E, sg(D)] + sg(MIWAE(M, K))``

whose value is ``-IWAE(M K)`` and whose gradients are the two above. The log-weights are the VAE's; the bounds
are ``miwae``'s. Metrics: ``loss`` (= ``neg_iwae``), ``neg_miwae``, ``neg_elbo``.
"""
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.models import miwae, vae
from aelab.models.family import Family

SECTION = 'piwae'
CONFIG = {'num_estimates': (8, "M: the encoder's bound is MIWAE(M, K), the decoder's IWAE(M K), K = vae.num_samples "
                             '(Rainforth et al. 2018)')}
BUILDS_ON = ('vae',)
PENALTIES = ('none',)
HYPERPARAMS = dict(vae.HYPERPARAMS)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.piwae`` (``vae.validate`` has run). Raises ConfigError naming the field."""
  m = config.piwae.num_estimates
  check(isinstance(m, int) and m >= 1, f'piwae.num_estimates={m} (M) must be an integer >= 1.')
  miwae.check_bound_only(config)


def stop_gradient_of(params, part: str):
  """``params`` with ``jax.lax.stop_gradient`` on the subtree ``params['params'][part]`` (``'encoder'`` or
  ``'decoder'``)."""
  inner = {name: jax.lax.stop_gradient(tree) if name == part else tree for name, tree in params['params'].items()}
  return {**params, 'params': inner}


def make_objective(log_weights: Callable, num_estimates: int, num_samples: int) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)`` of the loss above, nats per example; both terms
  use the same ``M K`` samples (the same key)."""
  m, k = num_estimates, num_samples

  def objective(params, x_BxD, key, hp):
    log_w_decoder = log_weights(stop_gradient_of(params, 'encoder'), x_BxD, key, m * k, hp)
    log_w_encoder = log_weights(stop_gradient_of(params, 'decoder'), x_BxD, key, m * k, hp)
    neg_iwae = -jnp.mean(miwae.iwae_bound(log_w_decoder))
    neg_miwae = -jnp.mean(miwae.miwae_bound(log_w_encoder.reshape(m, k, -1)))
    loss = neg_iwae + neg_miwae - jax.lax.stop_gradient(neg_miwae)
    return loss, {'loss': loss, 'neg_iwae': neg_iwae, 'neg_miwae': neg_miwae, 'neg_elbo': -jnp.mean(log_w_decoder)}

  return objective


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The PIWAE's ``Family``: the VAE's, with the objective of this module."""
  fam = vae.family(config, data_shape)
  objective = make_objective(fam.log_weights, config.piwae.num_estimates, config.vae.num_samples)
  return dataclasses.replace(fam, objective=objective)
