"""A linear autoencoder with an L2 penalty on its code: a model family that lives outside aelab.

Train it with ``PYTHONPATH=docs/examples python -m aelab.main --config=configs/ae.py
--config.model.name=my_lab.linear_ae --workdir=runs/linear_ae``. Its config section is ``linear_ae``;
``--config.linear_ae.code_l2=0.1`` sets the penalty, a traced hyperparameter, so a sweep over it is one
compiled program.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.errors import ConfigError
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'linear_ae'
CONFIG = {'code_l2': (0.0, 'weight of the mean squared code in the loss (traced; >= 0)')}
HYPERPARAMS = dict(COMMON_HYPERPARAMS, code_l2='linear_ae.code_l2')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when ``linear_ae.code_l2`` is negative."""
  if config.linear_ae.code_l2 < 0:
    raise ConfigError(f'linear_ae.code_l2={config.linear_ae.code_l2} is negative: use a weight >= 0.')


class Model(nn.Module):
  """``x_BxD -> (z_BxZ, x_hat_BxD)``: one dense encoder layer and one dense decoder layer."""
  latent_dim: int
  data_dim: int

  def setup(self):
    self.encoder = nn.Dense(self.latent_dim)
    self.decoder = nn.Dense(self.data_dim)

  def encode(self, x_BxD: jax.Array) -> jax.Array:
    return self.encoder(x_BxD)

  def decode(self, z_BxZ: jax.Array) -> jax.Array:
    return self.decoder(z_BxZ)

  def __call__(self, x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    z_BxZ = self.encode(x_BxD)
    return z_BxZ, self.decode(z_BxZ)


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The linear autoencoder's ``Family`` for examples of shape ``data_shape`` (flattened)."""
  shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
  model = Model(config.model.latent_dim, math.prod(shape))
  encode = lambda params, x_BxD: model.apply(params, x_BxD, method=Model.encode)  # noqa: E731
  decode = lambda params, z_BxZ: model.apply(params, z_BxZ, method=Model.decode)  # noqa: E731

  def eval_fn(params, x_BxD, key, hp):
    """Per-example metrics: reconstruction MSE per value, mean squared code."""
    z_BxZ, x_hat_BxD = model.apply(params, x_BxD)
    return {'recon_mse': jnp.mean((x_hat_BxD - x_BxD) ** 2, -1), 'code_l2': jnp.mean(z_BxZ ** 2, -1)}

  def objective(params, x_BxD, key, hp):
    """Batch mean of the reconstruction MSE plus ``hp['code_l2']`` times the mean squared code; the
    metrics (logged as ``train/<name>``) include the ``loss``."""
    per_example = eval_fn(params, x_BxD, key, hp)
    loss = jnp.mean(per_example['recon_mse'] + hp['code_l2'] * per_example['code_l2'])
    return loss, {'loss': loss, **{name: jnp.mean(value) for name, value in per_example.items()}}

  return Family(model=model, init=model.init, eval=eval_fn, encode=encode, decode=decode,
                reconstruct=lambda params, x_BxD, key, hp: (x_BxD, decode(params, encode(params, x_BxD))),
                objective=objective)
