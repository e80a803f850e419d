"""Minibatch Adam on arrays, for the small networks aelab trains beside its autoencoders (the
``fd_classifier`` feature net, a PixelCNN prior over VQ-VAE codes): one jitted ``lax.scan`` per epoch over
a permutation of the examples, as the engine's epoch does, without its workdir and hooks."""
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aelab.nn import compiler

Params = Any
# loss(params, batch, key) -> scalar; batch: a tuple of B x ... arrays, one per array given to fit_arrays.
Loss = Callable[[Params, tuple[jax.Array, ...], jax.Array], jax.Array]


def fit_arrays(loss: Loss, params: Params, arrays: Sequence[np.ndarray], key: jax.Array, num_epochs: int,
               batch_size: int, learning_rate: float) -> tuple[Params, list[float]]:
  """Minimizes ``loss`` with Adam over ``num_epochs`` passes of shuffled minibatches of ``arrays`` (all of
  the same length ``N``; the last ``N mod batch_size`` examples of each permutation are skipped).
  Returns the parameters and the mean loss of each epoch. Raises ValueError for ``batch_size > N``."""
  n = len(arrays[0])
  if not 1 <= batch_size <= n:
    raise ValueError(f'batch_size={batch_size} must lie in [1, {n}] (the number of examples).')
  tx = optax.adam(learning_rate)
  data = tuple(jnp.asarray(a) for a in arrays)
  steps = n // batch_size

  def step(carry, inputs):
    params, opt_state = carry
    index_B, step_key = inputs
    value, grads = jax.value_and_grad(loss)(params, tuple(a[index_B] for a in data), step_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  @functools.partial(jax.jit, compiler_options=compiler.on_cpu(compiler.LONG_RUNNING))  # thousands of steps
  def epoch(params, opt_state, epoch_key):
    perm_key, step_key = jax.random.split(epoch_key)
    index = jax.random.permutation(perm_key, n)[:steps * batch_size].reshape(steps, batch_size)
    (params, opt_state), values = jax.lax.scan(step, (params, opt_state), (index, jax.random.split(step_key, steps)))
    return params, opt_state, jnp.mean(values)

  opt_state, history = tx.init(params), []
  for i in range(num_epochs):
    params, opt_state, value = epoch(params, opt_state, jax.random.fold_in(key, i))
    history.append(float(value))
  return params, history


def apply_in_batches(fn: Callable[[jax.Array], jax.Array], x_NxD: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """``fn`` (jitted by the caller) on ``x_NxD`` in batches of ``batch_size`` rows, concatenated on the host."""
  return np.concatenate([np.asarray(fn(jnp.asarray(x_NxD[i:i + batch_size])))
                         for i in range(0, len(x_NxD), batch_size)])
