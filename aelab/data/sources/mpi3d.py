"""``data.name=mpi3d``: an MPI3D file (Gondal et al. 2019; ``mpi3d_toy.npz``, ``mpi3d_realistic.npz``,
``mpi3d_real.npz``; ``data.path``): ``images`` uint8 1,036,800 x 64 x 64 x 3 in factor order, the last
fastest: object colour (6), object shape (6), object size (2), camera height (3), background colour (3),
first degree of freedom (40), second degree of freedom (40).

The factors come from the row index (``np.unravel_index`` over ``data.mpi3d.counts``, the published ones
by default), in ``Dataset.extras`` as ``aelab.data.factors`` describes; the label of an example is its
shape. ``images`` stored uncompressed (``np.savez``, as published) is read in place, row by row
(``aelab.data.sources.npz.NpyFile``), so the 12.7 GB of images stream with their factors (``data.stream``
is automatic above ``data.stream_above_mb``); a compressed one is decompressed into memory.
"""
from __future__ import annotations

import math
import pathlib
import zipfile
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.data.sources.npz import NpyFile
from aelab.errors import ConfigError, DataError

SECTION = 'mpi3d'
PUBLISHED_COUNTS = (6, 6, 2, 3, 3, 40, 40)
CONFIG: dict[str, tuple[Any, str]] = {
    'counts': (PUBLISHED_COUNTS, 'values of each factor in the file\'s row order (object colour, shape, size, '
               'camera height, background colour, first DOF, second DOF); their product is the number of images'),
}
PATH = "an MPI3D .npz (mpi3d_toy.npz, ...): 'images' uint8 1036800 x 64 x 64 x 3 in factor order"
FACTOR_NAMES = ('object_color', 'object_shape', 'object_size', 'camera_height', 'background_color', 'first_dof',
                'second_dof')
IMAGE_SHAPE = (64, 64, 3)


def validate(data_config: Any) -> None:
  """Raises ConfigError unless data.mpi3d.counts is 7 positive ints."""
  counts = tuple(arrays.section(data_config, SECTION, CONFIG)['counts'])
  if len(counts) != len(FACTOR_NAMES) or not all(isinstance(c, int) and c >= 1 for c in counts):
    raise ConfigError(f'data.mpi3d.counts={counts} must be {len(FACTOR_NAMES)} positive ints {FACTOR_NAMES}, '
                      f'e.g. {PUBLISHED_COUNTS}.')


def adapt(config: Any) -> Any:
  """No binarization (``data.binarize='none'``): the colour images are the Bernoulli likelihood's targets as
  they are, as in disentanglement_lib. Returns ``config``, changed."""
  config.data.binarize = 'none'
  return config


def counts_of(data_config: Any) -> tuple[int, ...]:
  """``data.mpi3d.counts`` as a tuple."""
  return tuple(arrays.section(data_config, SECTION, CONFIG)['counts'])


def read(data_config: Any) -> arrays.Read:
  """Every image of the file, held out by ``data.test_fraction``; labels the row indices (the flat factor
  indices) until :func:`aelab.data.factors.finish` turns them into factors.

  Raises:
    DataNotFoundError: data.path does not exist.
    DataError: not an npz archive, no ``images``, ``images`` of another shape than ``prod(counts) x 64 x 64 x
      3`` uint8 (the message names the file, the key and the expected shape), a truncated file.
  """
  counts = counts_of(data_config)
  reader = Mpi3DFile(arrays.a_file(arrays.required_path(data_config, PATH), PATH), counts)
  return arrays.Read(arrays.Split(reader, reader.where), None, 'image',
                     extras=factors.extras(reader, reader.y, counts, FACTOR_NAMES),
                     finish=factors.finish(reader.y, counts, FACTOR_NAMES.index('object_shape')))


def stored_megabytes(data_config: Any) -> float:
  """The images' stored size (uint8) in MB, from the file's header (0 when it cannot be read: ``read`` says why)."""
  try:
    npy = NpyFile(data_config.path, 'images')
    return float(np.prod(npy.shape)) * npy.dtype.itemsize / 2**20
  except (DataError, *arrays.READ_ERRORS):
    return 0.0


class Mpi3DFile(arrays.Reader):
  """The rows of ``images`` and their flat factor index (the row index)."""

  def __init__(self, path: pathlib.Path, counts: tuple[int, ...]):
    self.where = f'mpi3d file {path}'
    with arrays.reading(self.where, PATH):
      if not zipfile.is_zipfile(path):
        raise DataError(f'{self.where} is not an .npz archive (or is truncated); expected {PATH}.')
      with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if 'images.npy' not in names:
          raise DataError(f"{self.where} has no 'images' (it has {[n[:-4] for n in names]}); expected {PATH}.")
        stored = archive.getinfo('images.npy').compress_type == zipfile.ZIP_STORED
      self.images = NpyFile(path, 'images') if stored else np.load(path, allow_pickle=False)['images']
    factors.check_array(self.where, 'images', self.images, (math.prod(counts), *IMAGE_SHAPE), np.uint8)
    self.y = np.arange(len(self.images), dtype=np.int32)

  def __len__(self) -> int:
    return len(self.images)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if rows_R is None:
      x = self.images.read_all() if isinstance(self.images, NpyFile) else self.images
      return arrays.images(x, self.where), self.y
    rows_R = np.asarray(rows_R)
    return arrays.images(self.images[rows_R], self.where), self.y[rows_R]
