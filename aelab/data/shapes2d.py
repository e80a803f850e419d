"""Shapes2D: a dSprites-like ground-truth dataset drawn with numpy (Matthey et al. 2017, dSprites).

Binary ``size x size`` images of one white sprite on black, generated from five independent factors of
variation (all combinations):

====== ===== ===================================================================
index  name  values (``counts`` of them; default ``(3, 6, 40, 32, 32)``)
====== ===== ===================================================================
0      shape square, ellipse, heart (at most 3)
1      scale sprite radius ``0.5 ... 1`` times ``0.14 * size``, linearly spaced
2      orient rotation ``0 ... 2 pi`` (endpoint excluded)
3      x     centre column, linearly spaced so that every sprite stays inside the image
4      y     centre row, likewise
====== ===== ===================================================================

Factor values are the integer indices ``0 .. counts[k] - 1`` (``factors_NxK``, int32). :class:`Shapes2D`
holds a grid and is the *factor sampler* the BetaVAE and FactorVAE scores need: ``sample_factors(num,
rng)`` and ``images(factors)``. The full grid (737,280 images of 64 x 64) is an accelerator-scale
dataset; tests and CPU studies pick a smaller grid (``data.shapes2d.counts``) and image size
(``data.shapes2d.size``).
"""
import dataclasses
import functools
import math

import numpy as np

FACTOR_NAMES = ('shape', 'scale', 'orientation', 'x', 'y')
SHAPES = ('square', 'ellipse', 'heart')
DEFAULT_COUNTS = (3, 6, 40, 32, 32)
DEFAULT_SIZE = 64
_RADIUS = 0.14  # the largest sprite's radius, as a fraction of the image size
_CHUNK = 4096  # images drawn per numpy call
_CACHE_PIXELS = 2 ** 30  # grids up to this many pixels (1 GiB as bool) are drawn once and cached


@dataclasses.dataclass(frozen=True)
class Shapes2D:
  """One grid of factors: ``counts`` values per factor (shape, scale, orientation, x, y), images of
  ``size x size`` pixels. Raises ValueError for a grid it cannot draw (see :func:`check`)."""
  counts: tuple[int, ...] = DEFAULT_COUNTS
  size: int = DEFAULT_SIZE

  def __post_init__(self):
    check(self.counts, self.size)

  @property
  def num_factors(self) -> int:
    return len(self.counts)

  @property
  def num_images(self) -> int:
    return math.prod(self.counts)

  def all_factors(self) -> np.ndarray:
    """Every combination, row-major (the last factor fastest): int32 ``num_images x 5``."""
    return np.stack(np.unravel_index(np.arange(self.num_images), self.counts), axis=-1).astype(np.int32)

  def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` factor vectors drawn uniformly and independently per factor: int32 ``num x 5``."""
    return np.stack([rng.integers(0, c, num) for c in self.counts], axis=-1).astype(np.int32)

  def images(self, factors_NxK: np.ndarray) -> np.ndarray:
    """The images of ``factors_NxK``: float32 ``N x size*size`` in {0, 1} (flattened, row-major)."""
    factors_NxK = np.asarray(factors_NxK)
    if factors_NxK.ndim != 2 or factors_NxK.shape[1] != self.num_factors:
      raise ValueError(f'factors must be N x {self.num_factors}, got shape {factors_NxK.shape}.')
    if np.any(factors_NxK < 0) or np.any(factors_NxK >= np.asarray(self.counts)):
      raise ValueError(f'factor values must lie in [0, counts) with counts={self.counts}.')
    if self.num_images * self.size ** 2 <= _CACHE_PIXELS:  # small grids: drawn once, then indexed
      return _grid_images(self)[np.ravel_multi_index(tuple(factors_NxK.T), self.counts)].astype(np.float32)
    return self.draw(factors_NxK).reshape(len(factors_NxK), -1).astype(np.float32)

  def draw(self, factors_NxK: np.ndarray) -> np.ndarray:
    """Boolean ``N x size x size`` images of ``factors_NxK``, drawn (no cache)."""
    chunks = [self._draw(factors_NxK[i:i + _CHUNK]) for i in range(0, len(factors_NxK), _CHUNK)]
    return np.concatenate(chunks) if chunks else np.zeros((0, self.size, self.size), bool)

  def _draw(self, f_NxK: np.ndarray) -> np.ndarray:
    """Boolean ``N x size x size`` masks: pixel centres inside the rotated, scaled, shifted sprite."""
    n_shape, n_scale, n_orient, n_x, n_y = self.counts
    size = self.size
    r_max = _RADIUS * size
    radius = r_max * _spaced(0.5, 1.0, n_scale)[f_NxK[:, 1]]
    angle = 2.0 * np.pi * f_NxK[:, 2] / n_orient
    margin = r_max * math.sqrt(2.0) + 0.5  # a rotated square's corner stays inside
    cx = _spaced(margin, size - margin, n_x)[f_NxK[:, 3]]
    cy = _spaced(margin, size - margin, n_y)[f_NxK[:, 4]]
    pix = np.arange(size, dtype=np.float64) + 0.5
    dx = pix[None, None, :] - cx[:, None, None]
    dy = pix[None, :, None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r  # sprite frame, unit radius
    shape = f_NxK[:, 0][:, None, None]
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.75
    ellipse = np.square(u) + np.square(v / 0.5) <= 1.0
    hu, hv = 1.15 * u, -1.15 * v + 0.15  # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, point down
    heart = np.power(np.square(hu) + np.square(hv) - 1.0, 3) <= np.square(hu) * np.power(hv, 3)
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


@functools.lru_cache(maxsize=2)
def _grid_images(grid: Shapes2D) -> np.ndarray:
  """Every image of a small grid, boolean ``num_images x size*size`` (row-major factor order)."""
  return grid.draw(grid.all_factors()).reshape(grid.num_images, -1)


def _spaced(lo: float, hi: float, num: int) -> np.ndarray:
  """``num`` values from ``lo`` to ``hi`` (the midpoint when ``num`` is 1)."""
  return np.full(1, (lo + hi) / 2.0) if num == 1 else np.linspace(lo, hi, num)


def check(counts, size: int) -> None:
  """Raises ValueError unless ``counts`` is 5 positive ints (at most 3 shapes) and ``size >= 8``."""
  counts = tuple(counts)
  if len(counts) != len(FACTOR_NAMES) or not all(isinstance(c, int) and c >= 1 for c in counts):
    raise ValueError(f'shapes2d counts={counts} must be 5 positive integers {FACTOR_NAMES}, '
                     f'e.g. {DEFAULT_COUNTS}.')
  if counts[0] > len(SHAPES):
    raise ValueError(f'shapes2d has {len(SHAPES)} shapes {SHAPES}; counts[0]={counts[0]}.')
  if not isinstance(size, int) or size < 8:
    raise ValueError(f'shapes2d size={size} must be an int >= 8 (pixels per side), e.g. {DEFAULT_SIZE}.')


def factor_entropies(counts) -> np.ndarray:
  """Entropy in nats of each factor under the uniform grid: ``log counts[k]``."""
  return np.log(np.asarray(counts, np.float64))
