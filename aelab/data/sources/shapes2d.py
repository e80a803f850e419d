"""``data.name=shapes2d``: every image of the dSprites-like grid of ``aelab.data.shapes2d`` (factors
shape, scale, orientation, x, y; ``data.shapes2d.counts`` values each, ``data.shapes2d.size`` pixels),
held out by ``data.test_fraction``. Labels are the shape factor; ``Dataset.extras`` holds
``factors_train`` (int32 [N, K]), ``factors_test`` (int32 [M, K]) and ``factor_counts``. :func:`adapt` gives
a config the setting of Locatello et al. 2019 (Chen et al. 2018 on dSprites)."""
import dataclasses
from typing import Any

import numpy as np

from aelab.data import arrays
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
  extras = {'factors_train': f_train, 'factors_test': f_test, 'factor_counts': counts}
  return dataclasses.replace(ds, y_train=f_train[:, 0], y_test=f_test[:, 0], extras=extras)
