"""Latent distributions beyond the Gaussian: the categorical with its Gumbel-softmax relaxation.

Log-probabilities and KL terms in plain ``jax.numpy``, nats; ``N`` categorical variables of ``K`` classes
each are stored as ``..._BxNxK``.
"""
import math

import jax
import jax.numpy as jnp


def gumbel_softmax(key: jax.Array, logits_BxNxK: jax.Array, temperature: jax.Array | float,
                   straight_through: bool = False) -> jax.Array:
  """A relaxed one-hot sample ``softmax((logits + g) / temperature)``, ``g ~ Gumbel(0, 1)`` (Jang et al.
  2017, Eq. 2; Maddison et al. 2017). ``straight_through``: the one-hot of its argmax in the forward pass
  and the relaxed sample's gradient (Jang et al. 2017, Sec. 2.2). Returns ``B x N x K``."""
  g = jax.random.gumbel(key, logits_BxNxK.shape, logits_BxNxK.dtype)
  soft = jax.nn.softmax((logits_BxNxK + g) / temperature, axis=-1)
  if not straight_through:
    return soft
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def sample_categorical(key: jax.Array, logits_BxNxK: jax.Array, num_samples: int | None = None) -> jax.Array:
  """Exact one-hot samples of ``Cat(softmax(logits))`` (the Gumbel-max trick, Jang et al. 2017, Eq. 1):
  ``B x N x K``, or ``S x B x N x K`` with ``num_samples = S``."""
  logits = logits_BxNxK if num_samples is None else jnp.broadcast_to(logits_BxNxK, (num_samples,
                                                                                      *logits_BxNxK.shape))
  index = jnp.argmax(logits + jax.random.gumbel(key, logits.shape, logits.dtype), axis=-1)
  return jax.nn.one_hot(index, logits_BxNxK.shape[-1], dtype=logits_BxNxK.dtype)


def categorical_log_prob(logits_BxNxK: jax.Array, one_hot_BxNxK: jax.Array) -> jax.Array:
  """``log q(z)`` of one-hot ``z`` under ``Cat(softmax(logits))``, summed over the ``N`` variables: shape
  ``B`` (or any leading shape), nats."""
  return jnp.sum(one_hot_BxNxK * jax.nn.log_softmax(logits_BxNxK, axis=-1), axis=(-2, -1))


def kl_categorical_uniform(logits_BxNxK: jax.Array) -> jax.Array:
  """``KL(Cat(softmax(logits)) || Uniform(K))`` summed over the ``N`` variables: ``sum q log(K q)``, shape
  ``B``, nats per example (Jang et al. 2017, Sec. 4; 0 for a uniform posterior, at most ``N log K``)."""
  log_q = jax.nn.log_softmax(logits_BxNxK, axis=-1)
  return jnp.sum(jnp.exp(log_q) * (log_q + math.log(logits_BxNxK.shape[-1])), axis=(-2, -1))
