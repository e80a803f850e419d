"""Figures of training, computed on the device in one compiled call and drawn off the training path.

The arrays behind the end-of-training figures (codes of the test split, interpolations, traversals,
prior samples) come from one jitted function over a group's model axis (:func:`make_final_arrays`);
matplotlib (``aelab.eval.plots``) draws them on one background thread (:class:`Painter`), so the next epoch
does not wait for a figure. Figures and their files:

- ``reconstructions_epochNNN.png`` every ``train.figures_every`` epochs (input / corrupted / reconstruction)
  and ``reconstructions_over_epochs.png`` at the end (``reconstructions_by_epoch.npz`` keeps the rows);
- ``learning_curves.png``, ``interpolation.png``, ``traversal.png``, ``latent_scatter.png`` (with labels)
  and ``samples.png`` (families with a prior) at the end;
- ``feature_density.png`` (the histogram of log10 firing frequency per latent) at the end, for sparse codes
  (an SAE's; any data).

``train.figures_every = 0`` draws none of them.
"""
import concurrent.futures
import os
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import data
from aelab.eval import metrics, plots
from aelab.models import Family
from aelab.train import files

RECONSTRUCTIONS_FILE = 'reconstructions_by_epoch.npz'
NUM_SAMPLES = 32


def interpolate(z_a: jax.Array, z_b: jax.Array, num_steps: int) -> jax.Array:
  """Codes on the straight line from ``z_a`` to ``z_b`` (both shape ``Z``), ends included: ``num_steps x Z``."""
  t = jnp.linspace(0.0, 1.0, num_steps)[:, None]
  return (1.0 - t) * z_a[None] + t * z_b[None]


def traverse(z_Z: jax.Array, values_V: jax.Array, dims: int) -> jax.Array:
  """Latent traversal: ``z`` with dimension ``d`` replaced by each of ``values``, for ``d < dims``:
  shape ``dims x V x Z`` (row ``d`` varies dimension ``d`` only)."""
  eye = jnp.eye(z_Z.shape[0])[:dims, None, :]
  return z_Z[None, None] * (1.0 - eye) + values_V[None, :, None] * eye


def make_final_arrays(family: Family, config: ml_collections.ConfigDict, num_steps: int = 10) -> Callable:
  """``arrays(params, x_test_MxD) -> dict`` for one model (traceable; the engine vmaps and jits it):
  ``codes`` (``M x Z``, for the scatter) and their ``active_units``, and for the figures ``interpolation``
  (``2 x num_steps x D``), ``traversal`` (``dims x num_steps x D``), ``samples`` and ``prior`` where the
  family has a prior (a conditional family's ``samples`` with their ``sample_labels``, :func:`sample_labels`)."""

  def arrays(params, x_test_MxD):
    codes = metrics.encode_split(family.encode, params, x_test_MxD, config.train.eval_batch_size)
    out = {'codes': codes, 'active_units': metrics.active_units(codes)}
    if not config.train.figures_every:
      return out
    z = codes[:4]
    # a conditional family decodes each line with its first example's label, each traversal with the first's
    decode, y4 = _decoder(family, x_test_MxD)
    lines = jnp.stack([interpolate(z[2 * i], z[2 * i + 1], num_steps) for i in range(2)])
    out['interpolation'] = decode(params, lines.reshape(-1, z.shape[-1]), y4[::2]).reshape(2, num_steps, -1)
    spread = jnp.max(jnp.std(codes, axis=0))
    dims = min(config.model.latent_dim, 10)
    grid = traverse(z[0], jnp.linspace(-2.0, 2.0, num_steps) * spread, dims)
    out['traversal'] = decode(params, grid.reshape(dims * num_steps, -1), y4[:1]).reshape(dims, num_steps, -1)
    key = jax.random.key(metrics.EVAL_SEED)
    if family.sample is not None and family.num_classes:
      out['sample_labels'] = sample_labels(NUM_SAMPLES, family.num_classes)
      out['samples'] = family.sample(params, key, NUM_SAMPLES, out['sample_labels'])
    elif family.sample is not None:
      out['samples'] = family.sample(params, key, NUM_SAMPLES)
    if family.sample_prior is not None and config.model.latent_dim == 2:
      out['prior'] = family.sample_prior(key, data.num_examples(x_test_MxD))
    return out

  return arrays


def sample_labels(num: int, num_classes: int) -> jax.Array:
  """``num`` labels, each of ``0 .. num_classes - 1`` in a run of ``num / num_classes`` (rounded down or up;
  ``0 0 0 1 1 1 1 ...``): the labels a conditional family's samples are drawn with, one figure row per label."""
  return (jnp.arange(num) * num_classes // num).astype(jnp.int32)


def _decoder(family: Family, x_test_MxD: Any) -> tuple[Callable, jax.Array]:
  """``(decode(params, z_NxZ, y_R), y_4)``: ``family.decode``, for a conditional family with each of ``R``
  labels repeated over ``N / R`` consecutive codes; ``y_4`` the first four test labels (zeros without)."""
  if not family.num_classes:
    return (lambda params, z, y: family.decode(params, z)), jnp.zeros(4, jnp.int32)
  return (lambda params, z, y: family.decode(params, z, jnp.repeat(y, z.shape[0] // y.shape[0]))), x_test_MxD.y[:4]


class Painter:
  """Draws figures on one background thread; :meth:`wait` blocks until all are drawn (and re-raises
  the first error). ``seconds`` is the time spent drawing."""

  def __init__(self):
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='figures')
    self._futures: list[concurrent.futures.Future] = []
    self._lock = threading.Lock()
    self.seconds = 0.0

  def submit(self, fn: Callable, *args: Any) -> None:
    def timed():
      t0 = time.perf_counter()
      try:
        fn(*args)
      finally:
        with self._lock:
          self.seconds += time.perf_counter() - t0
    self._futures.append(self._pool.submit(timed))

  def prepare(self) -> None:
    """Imports matplotlib on the figure thread now (0.4 s of Python), to be called while the main thread only
    waits (on compilation): drawn later, the first figure's import competed with the epochs for the GIL."""
    self.submit(plots.prepare)

  def wait(self) -> None:
    futures, self._futures = self._futures, []
    for future in futures:
      future.result()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._pool.shutdown()


def reconstructions(path_of: Callable[[str], str], epoch: int, rows: dict[str, np.ndarray],
                    shape: tuple[int, ...], by_epoch: dict[int, np.ndarray]) -> None:
  """Draws one epoch's reconstruction figure and adds its reconstructions to ``by_epoch`` and to
  ``reconstructions_by_epoch.npz`` (written atomically)."""
  plots.image_rows(rows, shape, path_of(f'reconstructions_epoch{epoch:03d}.png'), f'epoch {epoch}')
  by_epoch[epoch] = np.asarray(rows['reconstruction'], np.float32)
  with files.replacing(path_of(RECONSTRUCTIONS_FILE), 'wb') as f:
    np.savez_compressed(f, **{f'epoch_{e:03d}': v for e, v in sorted(by_epoch.items())})


def load_reconstructions(path_of: Callable[[str], str], up_to_epoch: int) -> dict[int, np.ndarray]:
  """The rows saved by :func:`reconstructions` for epochs up to ``up_to_epoch`` (none if no file)."""
  path = path_of(RECONSTRUCTIONS_FILE)
  if not os.path.exists(path):
    return {}
  with np.load(path) as stored:
    by_epoch = {int(k.split('_')[1]): stored[k] for k in stored.files}
  return {e: v for e, v in by_epoch.items() if e <= up_to_epoch}


def final(path_of: Callable[[str], str], arrays: dict[str, np.ndarray], dataset: Any,
          config: ml_collections.ConfigDict, by_epoch: dict[int, np.ndarray]) -> None:
  """Draws the end-of-training image figures of one model from its :func:`make_final_arrays` (host
  arrays); ``learning_curves.png`` is ``plots.learning_curves`` of its metrics."""
  shape = dataset.shape
  plots.image_rows({f'{2 * i} -> {2 * i + 1}': arrays['interpolation'][i] for i in range(2)}, shape,
                   path_of('interpolation.png'), 'interpolation between test codes')
  plots.image_rows({f'z{d}': row for d, row in enumerate(arrays['traversal'])}, shape,
                   path_of('traversal.png'), 'latent traversal (one dimension per row)')
  if 'sample_labels' in arrays:  # a conditional family's
    plots.label_rows(arrays['samples'], arrays['sample_labels'], shape, path_of('samples.png'),
                     'samples from the prior, one row per label')
  elif 'samples' in arrays:
    plots.image_grid(arrays['samples'], shape, path_of('samples.png'), title='samples from the prior')
  if dataset.y_test is not None:
    plots.latent_scatter(arrays['codes'], dataset.y_test, path_of('latent_scatter.png'), config.eval.projection,
                         arrays.get('prior'))
  if by_epoch:
    inputs = np.asarray(dataset.to_float32(dataset.test[:config.train.num_figure_images]))
    plots.reconstructions_over_epochs(inputs, by_epoch, shape, path_of('reconstructions_over_epochs.png'))
