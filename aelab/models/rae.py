"""Regularized autoencoder, RAE (Ghosh et al. 2020, From Variational to Deterministic Autoencoders, Eq. 11).

The deterministic autoencoder of ``aelab/models/ae.py`` with ``L = recon + beta * L_z + lambda * L_reg``:
``L_z = 1/2 ||z||^2`` (batch mean), ``beta = hp['code_weight']`` (``rae.code_weight``), and the decoder
regularizer ``L_reg`` of ``rae.regularizer`` with ``lambda = hp['decoder_weight']`` (``rae.decoder_weight``):

- ``'l2'`` (RAE-L2): ``||theta||_2^2``, the sum of the squares of the decoder's parameters (kernels and biases);
- ``'gp'`` (RAE-GP): ``||grad_z D(z)||_F^2`` at ``z = E(x)``, the squared Frobenius norm of the decoder's
  Jacobian (of its output, the likelihood parameters), exact (``common.jacobian_frobenius_sq``), batch mean;
  pythae instead takes the gradient of the summed outputs, one row-sum of this Jacobian.

An RAE has no prior to sample: Ghosh et al. fit one to the codes after training (ex-post density estimation).
``sample_prior`` here is ``N(0, I)``, the density its ``L_z`` term pulls the codes towards (the baseline
that the fitted one improves on); ``sample`` decodes its draws.
"""
import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check, check_choice
from aelab.models import ae, common, wae
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'rae'
CONFIG = {
    'regularizer': ('gp', "the decoder's regularizer: 'l2' (its parameters) or 'gp' (its Jacobian, gradient penalty)"),
    'code_weight': (1.0, 'beta, the weight of 1/2 ||z||^2 on the code (Ghosh et al. 2020, Eq. 11)'),
    'decoder_weight': (1e-3, "lambda, the weight of the decoder's regularizer (Ghosh et al. 2020, Eq. 11)"),
}
BUILDS_ON = ('ae',)
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'code_weight': 'rae.code_weight', 'decoder_weight': 'rae.decoder_weight'}
REGULARIZERS = ('l2', 'gp')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.rae``. Raises ConfigError naming the field."""
  r = config.rae
  check_choice(r.regularizer, REGULARIZERS, 'rae.regularizer')
  check(r.code_weight >= 0 and r.decoder_weight >= 0, 'rae.code_weight (beta) and rae.decoder_weight (lambda) '
        'must be >= 0.')
  check(not config.model.tied, 'model.tied=True: the RAE regularizes a decoder of its own; set model.tied=False.')


def decoder_l2(params) -> jax.Array:
  """``||theta||_2^2``: the sum of the squares of every decoder parameter (a scalar)."""
  return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params['params']['decoder']))


def make_decoder_regularizer(model: ae.Model, name: str) -> Callable:
  """``fn(params, z_BxZ) -> scalar``: :func:`decoder_l2` (``'l2'``) or the batch mean of the decoder's
  ``||J_D(z)||_F^2`` (``'gp'``). Raises ConfigError for another name."""
  check_choice(name, REGULARIZERS, 'rae.regularizer')
  if name == 'l2':
    return lambda params, z_BxZ: decoder_l2(params)
  decode = lambda params, z_BxZ: model.apply(params, z_BxZ, method=ae.Model.decode)  # noqa: E731
  return lambda params, z_BxZ: jnp.mean(common.jacobian_frobenius_sq(lambda z: decode(params, z), z_BxZ))


def make_objective(model: ae.Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``: ``mean(recon) + hp['code_weight'] * mean(1/2
  ||z||^2) + hp['decoder_weight'] * L_reg + hp['penalty_weight'] * penalty``. Metrics: ``loss``, ``recon``
  (units of ``model.likelihood``), ``code_l2`` (``mean 1/2 ||z||^2``), ``decoder_reg`` (``L_reg``)."""
  recon_loss = common.reconstruction_loss(config.model)
  penalty = common.make_penalty(config, ae.make_encode(model, config))
  corrupt = common.corrupt_fn(config)
  regularizer = make_decoder_regularizer(model, config.rae.regularizer)

  def objective(params, x_BxD, key, hp):
    x_tilde = corrupt(key, x_BxD, hp)
    z, out = model.apply(params, x_tilde)
    recon = jnp.mean(recon_loss(out, x_BxD))
    code_l2 = jnp.mean(0.5 * jnp.sum(jnp.square(z), axis=-1))
    reg = regularizer(params, z)
    pen = penalty(params, x_tilde, z, hp)
    loss = recon + hp['code_weight'] * code_l2 + hp['decoder_weight'] * reg + hp['penalty_weight'] * pen
    metrics = {'loss': loss, 'recon': recon, 'code_l2': code_l2, 'decoder_reg': reg}
    return loss, common.with_penalty(config, metrics, pen)

  return objective


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The RAE's ``Family``: the autoencoder's, with the RAE objective and decoded draws of ``N(0, I)``."""
  fam = ae.family(config, data_shape)
  return wae.with_gaussian_prior(dataclasses.replace(fam, objective=make_objective(fam.model, config)), config)
