"""Latent-space figures of a trained model: prior samples' neighbours, interpolations, traversals, code
scatters, and reconstructions over epochs. Pure JAX functions compute the images; ``aelab.plots`` draws.

``write_figures(run, params, figure_path)`` is called at the end of training for image data and writes
``interpolation.png``, ``traversal.png``, ``latent_scatter.png`` (with labels) and
``reconstructions_over_epochs.png`` (from the arrays saved each figure epoch).
"""
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aelab import evaluate, plots

RECONSTRUCTIONS_FILE = 'reconstructions_by_epoch.npz'


def interpolate(z_a: jax.Array, z_b: jax.Array, num_steps: int) -> jax.Array:
  """Codes on the straight line from ``z_a`` to ``z_b`` (both shape ``Z``), ends included: ``num_steps x Z``."""
  t = jnp.linspace(0.0, 1.0, num_steps)[:, None]
  return (1.0 - t) * z_a[None] + t * z_b[None]


def traverse(z_Z: jax.Array, values_V: jax.Array, dims: int) -> jax.Array:
  """Latent traversal: ``z`` with dimension ``d`` replaced by each of ``values``, for ``d < dims``:
  shape ``dims x V x Z`` (row ``d`` varies dimension ``d`` only)."""
  eye = jnp.eye(z_Z.shape[0])[:dims, None, :]
  return z_Z[None, None] * (1.0 - eye) + values_V[None, :, None] * eye


def save_reconstructions(path: str, epoch: int, x_hat_NxD: np.ndarray) -> None:
  """Adds one epoch's reconstructions to the ``.npz`` at ``path`` (arrays named ``epoch_NNN``)."""
  stored = dict(np.load(path)) if os.path.exists(path) else {}
  stored[f'epoch_{epoch:03d}'] = np.asarray(x_hat_NxD, np.float32)
  np.savez_compressed(path, **stored)


def write_figures(run: Any, params, figure_path: Callable[[str], str], num_steps: int = 10) -> None:
  """Writes the latent-space figures of ``run`` (a ``train.Run`` on image data) at ``params``; none with
  ``train.figures_every=0``."""
  dataset, family, config = run.dataset, run.family, run.config
  if dataset.kind != 'image' or not hasattr(family, 'make_encode') or not config.train.figures_every:
    return
  encode = jax.jit(family.make_encode(run.model, config))
  decode = jax.jit(family.make_decode(run.model, config))
  x_test = jnp.asarray(dataset.x_test)
  z = encode(params, x_test[:4])
  rows = {f'{2 * i} -> {2 * i + 1}': np.asarray(decode(params, interpolate(z[2 * i], z[2 * i + 1], num_steps)))
          for i in range(2)}
  plots.image_rows(rows, dataset.shape, figure_path('interpolation.png'), 'interpolation between test codes')
  codes = evaluate.encode_split(family.make_encode(run.model, config), params, x_test)
  spread = float(np.max(np.std(codes, axis=0)))
  values = jnp.linspace(-2.0 * spread, 2.0 * spread, num_steps)
  dims = min(config.model.latent_dim, 10)
  grid = np.asarray(decode(params, traverse(z[0], values, dims).reshape(dims * num_steps, -1)))
  plots.image_rows({f'z{d}': grid[d * num_steps:(d + 1) * num_steps] for d in range(dims)}, dataset.shape,
                   figure_path('traversal.png'), 'latent traversal (one dimension per row)')
  if dataset.y_test is not None:
    prior = np.asarray(family.sample_prior(config, jax.random.key(evaluate.EVAL_SEED), len(codes))) \
        if hasattr(family, 'sample_prior') else None
    plots.latent_scatter(codes, dataset.y_test, figure_path('latent_scatter.png'), config.eval.projection, prior)
  saved = figure_path(RECONSTRUCTIONS_FILE)
  if os.path.exists(saved):
    by_epoch = {int(k.split('_')[1]): v for k, v in np.load(saved).items()}
    inputs = np.asarray(dataset.x_test[:config.train.num_figure_images])
    plots.reconstructions_over_epochs(inputs, by_epoch, dataset.shape, figure_path('reconstructions_over_epochs.png'))
