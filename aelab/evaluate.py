"""Metrics of a trained model on a whole split, in one jitted call.

A model family's ``eval_fn(params, x_BxD, key, hp)`` returns per-example metrics; here they are averaged
over the split (nats per example, or per pixel, as the family documents). Corruption and sampling in
evaluation use a fixed key, independent of the run's seed, so runs are compared on the same noise.
"""
from typing import Callable

import jax
import jax.numpy as jnp

EVAL_SEED = 20_260_101


def make_evaluate(eval_fn: Callable, batch_size: int) -> Callable:
  """Returns jitted ``evaluate(params, x_MxD, hp) -> {name: mean over the M examples}``.

  The split is padded to whole batches of ``batch_size`` (at most ``M``); padded rows are masked out.
  Batch ``i`` gets key ``fold_in(key(EVAL_SEED), i)``.
  """

  @jax.jit
  def evaluate(params, x_MxD, hp):
    num = x_MxD.shape[0]
    bs = min(batch_size, num)
    num_batches = -(-num // bs)
    x_padded = jnp.pad(x_MxD, ((0, num_batches * bs - num), (0, 0)))
    mask = (jnp.arange(num_batches * bs) < num).reshape(num_batches, bs)
    base_key = jax.random.key(EVAL_SEED)

    def batch_sums(args):
      i, x_BxD, mask_B = args
      per_example = eval_fn(params, x_BxD, jax.random.fold_in(base_key, i), hp)
      return {k: jnp.sum(jnp.where(mask_B, v, 0.0)) for k, v in per_example.items()}

    sums = jax.lax.map(batch_sums, (jnp.arange(num_batches), x_padded.reshape(num_batches, bs, -1), mask))
    return {k: jnp.sum(v) / num for k, v in sums.items()}

  return evaluate


def active_units(mean_NxZ: jax.Array, threshold: float = 0.01) -> jax.Array:
  """Number of active latent units: dimensions ``u`` with ``Cov_x(E_q[z_u|x]) > threshold``.

  ``mean_NxZ``: posterior means ``E_q[z|x]`` (or deterministic codes) of ``N`` test examples.
  Source: Burda, Grosse & Salakhutdinov 2016 (Importance Weighted Autoencoders), Sec. 5.2, threshold 0.01.
  Returns an int32 scalar.
  """
  return jnp.sum(jnp.var(mean_NxZ, axis=0) > threshold).astype(jnp.int32)
