"""``data.name=shapes2d``: every image of the dSprites-like grid of ``aelab.data.shapes2d`` (factors
shape, scale, orientation, x, y; ``data.shapes2d.counts`` values each, ``data.shapes2d.size`` pixels),
held out by ``data.test_fraction``. Labels are the shape factor; ``Dataset.extras`` holds
``factors_train`` (int32 [N, K]), ``factors_test`` (int32 [M, K]) and ``factor_counts``. :func:`adapt` gives
a config the setting of Locatello et al. 2019 (Chen et al. 2018 on dSprites).

:func:`write_dsprites` writes the grid in DeepMind's dSprites file format, which ``data.name=dsprites``
reads, so that the dSprites path runs offline end to end::

  python -m aelab.data.sources.shapes2d --write-dsprites=/tmp/dsprites.npz --counts=3,6,40,32,32
"""
import argparse
import dataclasses
import math
import pathlib
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.data import shapes2d as grids
from aelab.errors import ConfigError, DataError

SECTION = 'shapes2d'
CONFIG: dict[str, tuple[Any, str]] = {
    'counts': (grids.DEFAULT_COUNTS, 'values of each factor (shape <= 3, scale, orientation, x, y); every combination '
               'is one image'),
    'size': (grids.DEFAULT_SIZE, 'height and width of the images in pixels'),
}
PATH = None


def validate(data_config: Any) -> None:
  """Raises ConfigError for a grid that cannot be drawn (see ``aelab.data.shapes2d.check``)."""
  fields = arrays.section(data_config, SECTION, CONFIG)
  try:
    grids.check(tuple(fields['counts']), fields['size'])
  except (ValueError, TypeError) as e:
    raise ConfigError(f'data.shapes2d.counts / data.shapes2d.size: {e}') from None


def adapt(config: Any) -> Any:
  """The setting of Chen et al. 2018 on dSprites (Locatello et al. 2019): an MLP 1200-1200 with a 10-d code
  and a Bernoulli likelihood, no binarization, batch 64, Adam 1e-4, 10 epochs, and the disentanglement
  metrics at the end (no importance-sampled NLL). Returns ``config``, changed."""
  config.data.binarize = 'none'
  config.model.update(hidden=(1200, 1200), latent_dim=10, likelihood='bernoulli')
  config.optimizer.learning_rate = 1e-4
  config.train.update(num_epochs=10, batch_size=64)
  config.eval.nll_samples = 1
  return config


def grid(data_config: Any) -> grids.Shapes2D:
  """The grid ``data.shapes2d`` names (a factor sampler for the disentanglement scores)."""
  fields = arrays.section(data_config, SECTION, CONFIG)
  return grids.Shapes2D(tuple(fields['counts']), fields['size'])


def read(data_config: Any) -> arrays.Read:
  """Every image of the grid (uint8 N x size x size x 1); the label of an image is its flat index into the
  grid until :func:`finish` turns it into the factors. Raises DataError for a grid it cannot draw."""
  try:
    g = grid(data_config)
  except ValueError as e:
    raise DataError(f'data.shapes2d.counts / data.shapes2d.size: {e}') from None
  x = arrays.images(g.draw(g.all_factors()), 'shapes2d')
  rows = arrays.Rows(x, np.arange(g.num_images, dtype=np.int32))
  return arrays.Read(arrays.Split(rows, 'shapes2d'), None, 'image', finish=lambda ds: _with_factors(ds, g.counts))


def _with_factors(ds: Any, counts: tuple[int, ...]) -> Any:
  """``ds`` with the factors of each example in ``extras`` and the shape factor as its label."""
  f_train, f_test = (np.stack(np.unravel_index(y, counts), -1).astype(np.int32) for y in (ds.y_train, ds.y_test))
  extras = {'factors_train': f_train, 'factors_test': f_test, 'factor_counts': counts,
            'factor_names': grids.FACTOR_NAMES}
  return dataclasses.replace(ds, y_train=f_train[:, 0], y_test=f_test[:, 0], extras=extras)


def write_dsprites(path: str | pathlib.Path, counts: tuple[int, ...] = grids.DEFAULT_COUNTS, size: int = 64) -> int:
  """Writes every image of the grid ``counts`` (shape, scale, orientation, x, y) in the format of DeepMind's
  ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (uncompressed, as ``np.savez``): ``imgs`` uint8
  N x size x size in {0, 1}, ``latents_classes`` int64 N x 6 (a constant color 0, then the grid's factors,
  the last fastest as in the published file) and ``latents_values`` float64 N x 6 (color 1, shape 1..3,
  scale 0.5..1, orientation 0..2 pi, x and y in [0, 1], as the published file's ranges). Drawn and written
  in chunks (the full grid, 3 GB, never in memory). Returns the number of images. Raises ValueError for a
  grid it cannot draw."""
  g = grids.Shapes2D(tuple(counts), size)
  classes_NxK = np.concatenate([np.zeros((g.num_images, 1), np.int64), g.all_factors()], 1)
  chunk = 8192
  members = {'imgs': ((g.num_images, size, size), np.uint8,
                      (g.draw(classes_NxK[i:i + chunk, 1:]) for i in range(0, g.num_images, chunk))),
             'latents_classes': (classes_NxK.shape, np.int64, [classes_NxK]),
             'latents_values': (classes_NxK.shape, np.float64, [_dsprites_values(classes_NxK, g.counts)])}
  factors.write_npz(path, members)
  return g.num_images


def _dsprites_values(classes_NxK: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
  """dSprites' ``latents_values`` of ``latents_classes``: color 1, shape 1.., scale 0.5..1, orientation
  0..2 pi, positions 0..1."""
  spaced = lambda lo, hi, n: np.linspace(lo, hi, n) if n > 1 else np.full(1, lo)  # noqa: E731
  columns = [np.ones(len(classes_NxK)), classes_NxK[:, 1] + 1.0, spaced(0.5, 1.0, counts[1])[classes_NxK[:, 2]],
             2 * math.pi * classes_NxK[:, 3] / counts[2], spaced(0.0, 1.0, counts[3])[classes_NxK[:, 4]],
             spaced(0.0, 1.0, counts[4])[classes_NxK[:, 5]]]
  return np.stack(columns, 1)


def main(argv: list[str] | None = None) -> None:
  """``python -m aelab.data.sources.shapes2d --write-dsprites=FILE [--counts=3,6,40,32,32] [--size=64]``."""
  parser = argparse.ArgumentParser(description=write_dsprites.__doc__.split('.')[0])
  parser.add_argument('--write-dsprites', required=True, metavar='FILE', help='the .npz file to write')
  parser.add_argument('--counts', default=','.join(map(str, grids.DEFAULT_COUNTS)),
                      help='values of each factor: shape, scale, orientation, x, y')
  parser.add_argument('--size', type=int, default=64, help='pixels per side (data.name=dsprites reads 64)')
  args = parser.parse_args(argv)
  n = write_dsprites(args.write_dsprites, tuple(int(c) for c in args.counts.split(',')), args.size)
  print(f'wrote {n} images of {args.size}x{args.size} to {args.write_dsprites} (dSprites format)')


if __name__ == '__main__':
  main()
