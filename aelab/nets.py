"""Encoder and decoder networks (flax.linen). No losses here.

Shapes: inputs are flattened, ``x_BxD``; codes are ``z_BxZ``. The decoder returns the parameters of the
likelihood ``p(x|z)``: logits for a Bernoulli likelihood, the mean for a Gaussian / MSE one.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'identity': lambda x: x,
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
    'tanh': jnp.tanh,
    'elu': nn.elu,
    'gelu': nn.gelu,
    'softplus': nn.softplus,
    'leaky_relu': nn.leaky_relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation by name. Raises ValueError listing the known names."""
  if name not in ACTIVATIONS:
    raise ValueError(f'Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.')
  return ACTIVATIONS[name]


class MLP(nn.Module):
  """Dense layers of the given widths; ``activation`` between them, ``final_activation`` at the end.

  With no hidden widths and identity activations this is a single affine map (a linear autoencoder's
  encoder or decoder, Baldi & Hornik 1989).
  """
  widths: Sequence[int]
  activation: str = 'relu'
  final_activation: str = 'identity'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, name=f'dense_{i}')(x)
      last = i == len(self.widths) - 1
      x = activation(self.final_activation if last else self.activation)(x)
    return x


class Encoder(nn.Module):
  """MLP encoder ``x_BxD -> h_BxO`` with hidden widths ``hidden`` and ``out_dim`` outputs.

  For a deterministic autoencoder ``out_dim`` is the latent size and ``code_activation`` shapes the code
  (``sigmoid`` for a KL-sparsity code); a VAE asks for ``2 * latent_dim`` outputs (mean, log-variance).
  """
  hidden: Sequence[int]
  out_dim: int
  activation: str = 'relu'
  code_activation: str = 'identity'

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    return MLP((*self.hidden, self.out_dim), self.activation, self.code_activation, name='mlp')(x_BxD)


class Decoder(nn.Module):
  """MLP decoder ``z_BxZ -> out_BxD`` with hidden widths ``hidden`` (listed from the code outwards)."""
  hidden: Sequence[int]
  out_dim: int
  activation: str = 'relu'
  output_activation: str = 'identity'

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> jax.Array:
    return MLP((*self.hidden, self.out_dim), self.activation, self.output_activation, name='mlp')(z_BxZ)


class TiedDecoder(nn.Module):
  """Decoder whose weights are the transposed encoder kernels (tied weights); it owns only biases.

  Called as ``decoder(z_BxZ, encoder_kernels)`` with the encoder's kernels in encoder order.
  """
  activation: str = 'relu'
  output_activation: str = 'identity'

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, encoder_kernels: Sequence[jax.Array]) -> jax.Array:
    h = z_BxZ
    kernels = list(reversed(encoder_kernels))
    for i, kernel in enumerate(kernels):
      bias = self.param(f'bias_{i}', nn.initializers.zeros, (kernel.shape[0],))
      h = h @ kernel.T + bias
      last = i == len(kernels) - 1
      h = activation(self.output_activation if last else self.activation)(h)
    return h
