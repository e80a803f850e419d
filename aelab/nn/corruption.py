"""Input corruption for denoising autoencoders: pure functions ``(key, x, **params) -> x_tilde``.

Corruption is applied to the encoder's input only; the reconstruction target stays the clean ``x``
(Vincent et al. 2008, Extracting and Composing Robust Features with Denoising Autoencoders).
Inputs are ``x_BxD`` with values in [0, 1]; each call needs a fresh key.
"""
from typing import Callable

import jax
import jax.numpy as jnp

NAMES = ('none', 'gaussian', 'masking', 'salt_and_pepper')


def gaussian(key: jax.Array, x: jax.Array, std: jax.Array | float, clip: bool = True) -> jax.Array:
  """Additive isotropic Gaussian noise ``x + std * eps`` (the noise factor), clipped to [0, 1]."""
  x_tilde = x + std * jax.random.normal(key, x.shape, x.dtype)
  return jnp.clip(x_tilde, 0.0, 1.0) if clip else x_tilde


def masking(key: jax.Array, x: jax.Array, rate: jax.Array | float) -> jax.Array:
  """Masking noise: each input is forced to 0 independently with probability ``rate``."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x, 0.0)


def salt_and_pepper(key: jax.Array, x: jax.Array, rate: jax.Array | float) -> jax.Array:
  """Salt-and-pepper noise: a fraction ``rate`` of inputs set to 0 or 1 with equal probability."""
  hit_key, value_key = jax.random.split(key)
  hit = jax.random.bernoulli(hit_key, rate, x.shape)
  salt = jax.random.bernoulli(value_key, 0.5, x.shape).astype(x.dtype)
  return jnp.where(hit, salt, x)


def get(name: str, clip: bool = True) -> Callable[..., jax.Array]:
  """Returns ``fn(key, x, hp)`` applying corruption ``name`` with ``hp['corruption_std']`` or
  ``hp['corruption_rate']``; ``clip`` keeps Gaussian-corrupted inputs in [0, 1] (images).
  Raises ValueError for an unknown name."""
  if name == 'none':
    return lambda key, x, hp: x
  if name == 'gaussian':
    return lambda key, x, hp: gaussian(key, x, hp['corruption_std'], clip)
  if name == 'masking':
    return lambda key, x, hp: masking(key, x, hp['corruption_rate'])
  if name == 'salt_and_pepper':
    return lambda key, x, hp: salt_and_pepper(key, x, hp['corruption_rate'])
  raise ValueError(f'Unknown corruption {name!r}; choose one of {NAMES}.')
