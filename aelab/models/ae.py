"""Deterministic autoencoders: undercomplete, deep, linear, tied, sparse and denoising.

One objective covers them all (``config.model.name = 'ae'``): an encoder ``z = f(x_tilde)``, a decoder
``g(z)``, a reconstruction loss of ``g(z)`` against the clean ``x``, and an optional code penalty.
Denoising: ``x_tilde`` is a corruption of ``x`` (Vincent et al. 2008). Sparse: an L1 activity or a
KL(rho || rho_hat) penalty on ``z`` (Ng 2011). Contractive: the squared Frobenius norm of the encoder's
Jacobian (Rifai et al. 2011). ``model.net`` picks MLP or convolutional encoder and decoder.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import check
from aelab.nn import nets
from aelab.models import common
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = None  # the base config's model, corruption and penalty sections say all (no section of its own)
CONFIG = {}
PENALTIES = ('none', 'l1', 'kl_sparsity', 'contractive')
HYPERPARAMS = dict(COMMON_HYPERPARAMS)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks what the autoencoder needs of the base config. Raises ConfigError naming the field."""
  check(config.penalty.name != 'kl_sparsity' or config.model.code_activation == 'sigmoid',
        'penalty.name=kl_sparsity needs a code in (0, 1): set model.code_activation=sigmoid.')


class Model(nn.Module):
  """Encoder and decoder; ``__call__(x_BxD) -> (z_BxZ, out_BxD)``. ``data_shape``: one example's shape
  (``(D,)``, or ``(H, W, C)`` for ``net='conv'``); inputs and outputs are flattened either way."""
  hidden: tuple[int, ...]
  latent_dim: int
  data_shape: Sequence[int]
  activation: str = 'relu'
  code_activation: str = 'identity'
  output_activation: str = 'identity'
  tied: bool = False
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32  # of the computation (model.dtype); parameters and outputs are float32

  def setup(self):
    self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden, self.latent_dim, self.activation,
                                     self.code_activation, self.conv_channels, self.dtype)
    if self.tied:
      self.decoder = nets.TiedDecoder(self.activation, self.output_activation, self.dtype)
    else:
      self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                       self.output_activation, self.conv_channels, self.dtype)

  def encode(self, x_BxD: jax.Array) -> jax.Array:
    return self.encoder(x_BxD)

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    if not self.tied:
      return self.decoder(z_BxZ)
    mlp = self.encoder.variables['params']['mlp']
    kernels = [mlp[f'dense_{i}']['kernel'] for i in range(len(self.hidden) + 1)]
    return self.decoder(z_BxZ, kernels)

  def __call__(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    z = self.encode(x_BxD)
    return z, self.decode(z)


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The model of ``config.model`` for examples of shape ``data_shape`` (an int ``D`` means ``(D,)``).
  Raises ValueError when ``model.net=conv`` and the shape is not an ``H x W x C`` image."""
  m = config.model
  return Model(tuple(m.hidden), m.latent_dim, common.as_shape(m, data_shape), m.activation, m.code_activation,
               common.output_activation(m), m.tied, m.net, tuple(m.conv_channels), common.compute_dtype(m))


def init(model: Model, key: jax.Array, x_BxD: jax.Array):
  """Initial parameters for inputs shaped like ``x_BxD``."""
  return model.init(key, x_BxD)


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, metrics)``; the loss is the batch-mean
  reconstruction loss (units of ``model.likelihood``) plus ``hp['penalty_weight']`` times the penalty."""
  recon_loss = common.reconstruction_loss(config.model)
  penalty = common.make_penalty(config, make_encode(model, config))
  corrupt = common.corrupt_fn(config)

  def objective(params, x_BxD, key, hp):
    x_tilde = corrupt(key, x_BxD, hp)
    z, out = model.apply(params, x_tilde)
    recon = jnp.mean(recon_loss(out, x_BxD))
    pen = penalty(params, x_tilde, z, hp)
    loss = recon + hp['penalty_weight'] * pen
    return loss, common.with_penalty(config, {'loss': loss, 'recon': recon}, pen)

  return objective


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``: the corrupted input (``x`` itself
  without corruption) and the reconstruction mean ``E[x|z]``."""
  corrupt = common.corrupt_fn(config)

  def reconstruct(params, x_BxD, key, hp):
    x_tilde = corrupt(key, x_BxD, hp)
    _, out = model.apply(params, x_tilde)
    return x_tilde, common.mean_of(config.model, out)

  return reconstruct


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> dict of per-example metrics`` (each shape ``B``).

  ``recon``: the objective's reconstruction term (units of ``model.likelihood``); ``recon_mse``: per
  pixel, the reconstruction of the corrupted input against the clean ``x``; ``recon_mse_clean_input``
  (with corruption): the same from the uncorrupted input; ``recon_bce``: nats per example (Bernoulli).
  """
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)

  def eval_fn(params, x_BxD, key, hp):
    z, out = model.apply(params, corrupt(key, x_BxD, hp))
    metrics = {'recon': recon_loss(out, x_BxD), 'recon_mse': common.recon_mse(config.model, out, x_BxD),
               **common.code_stats(z)}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = metrics['recon']
    if config.corruption.name != 'none':
      out_clean = model.apply(params, x_BxD)[1]
      metrics['recon_mse_clean_input'] = common.recon_mse(config.model, out_clean, x_BxD)
    return metrics

  return eval_fn


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> z_BxZ``: the code of the clean input."""
  return lambda params, x_BxD: model.apply(params, x_BxD, method=Model.encode)


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD``: the reconstruction mean ``E[x|z]`` of codes."""
  return lambda params, z_BxZ: common.mean_of(config.model, model.apply(params, z_BxZ, method=Model.decode))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The deterministic autoencoder's ``Family`` (see ``aelab/models/family.py``)."""
  model = build(config, data_shape)
  return Family(model=model, init=lambda key, x_BxD: init(model, key, x_BxD), eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config),
                decode=make_decode(model, config), objective=make_objective(model, config))
