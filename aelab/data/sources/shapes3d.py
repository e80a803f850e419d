"""``data.name=shapes3d``: DeepMind's 3dshapes file (Burgess and Kim 2018), ``3dshapes.h5`` (``data.path``):
``images`` uint8 N x 64 x 64 x 3 (480,000 in the published file) and ``labels`` float64 N x 6, the factor
values floor_hue (10), wall_hue (10), object_hue (10), scale (8), shape (4), orientation (15).

Read with h5py, a chunk of rows at a time: the 480,000 images (5.9 GB as uint8, 23.6 GB as float32) stream
(``data.stream`` is automatic above ``data.stream_above_mb``) and keep their factors: each column of
``labels`` numbered by its sorted distinct values, in ``Dataset.extras`` as ``aelab.data.factors`` describes;
the label of an example is its shape.
"""
from __future__ import annotations

import pathlib
import threading
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.errors import DataError

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = "DeepMind's 3dshapes.h5 (images uint8 N x 64 x 64 x 3, labels float64 N x 6)"
FACTOR_NAMES = ('floor_hue', 'wall_hue', 'object_hue', 'scale', 'shape', 'orientation')
IMAGE_SHAPE = (64, 64, 3)
READ_CHUNK = 10_000  # rows per h5py read of the whole file


def validate(data_config: Any) -> None:
  """No fields of its own (data.path is checked when read)."""


def adapt(config: Any) -> Any:
  """No binarization (``data.binarize='none'``): the colour images are the Bernoulli likelihood's targets as
  they are, as in disentanglement_lib. Returns ``config``, changed."""
  config.data.binarize = 'none'
  return config


def read(data_config: Any) -> arrays.Read:
  """Every image of the file, held out by ``data.test_fraction``; labels the flat factor indices until
  :func:`aelab.data.factors.finish` turns them into factors.

  Raises:
    DataNotFoundError: data.path does not exist.
    DataError: not an HDF5 file, a missing key, a key of another shape or dtype (the message names the file,
      the key and the expected shape), a truncated file.
  """
  reader = Shapes3DFile(arrays.a_file(arrays.required_path(data_config, PATH), PATH))
  factors_NxK, counts = factors.classes(reader.labels)
  reader.y = factors.flat_index(factors_NxK, counts, reader.where)
  return arrays.Read(arrays.Split(reader, reader.where), None, 'image',
                     extras=factors.extras(reader, reader.y, counts, FACTOR_NAMES),
                     finish=factors.finish(reader.y, counts, FACTOR_NAMES.index('shape')))


def stored_megabytes(data_config: Any) -> float:
  """The images' stored size (uint8) in MB, from the file's header (0 when it cannot be read: ``read`` says why)."""
  import h5py  # noqa: PLC0415
  try:
    with h5py.File(data_config.path, 'r') as f:
      return float(np.prod(f['images'].shape)) * f['images'].dtype.itemsize / 2**20
  except (OSError, KeyError, TypeError):
    return 0.0


class Shapes3DFile(arrays.Reader):
  """The rows of ``images`` (uint8 64 x 64 x 3) read with h5py, and their labels ``y`` (set by :func:`read`).
  Rows are read in increasing order (h5py's rule) and returned in the order asked; one lock serializes the
  reads of grain's threads."""

  def __init__(self, path: pathlib.Path):
    import h5py  # noqa: PLC0415
    self.where, self.y, self.lock = f'3dshapes file {path}', None, threading.Lock()
    try:
      self.file = h5py.File(path, 'r')
    except OSError as e:
      raise DataError(f'{self.where} is no HDF5 file or is truncated ({str(e).splitlines()[0]}); expected {PATH}.'
                      ) from None
    missing = [k for k in ('images', 'labels') if k not in self.file]
    if missing:
      raise DataError(f'{self.where} has no {missing[0]!r} (it has {sorted(self.file)}); expected {PATH}.')
    self.images = self.file['images']
    factors.check_array(self.where, 'images', self.images, (None, *IMAGE_SHAPE), np.uint8)
    labels = self.file['labels']
    factors.check_array(self.where, 'labels', labels, (len(self.images), len(FACTOR_NAMES)))
    self.labels = self._read(labels, slice(None))
    arrays.check_finite(self.labels, f"{self.where}: 'labels'")

  def __len__(self) -> int:
    return len(self.images)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if rows_R is None:
      x = np.empty(self.images.shape, np.uint8)
      for start in range(0, len(x), READ_CHUNK):
        x[start:start + READ_CHUNK] = self._read(self.images, slice(start, start + READ_CHUNK))
      return arrays.images(x, self.where), self.y
    rows_R = np.asarray(rows_R)
    unique, inverse = np.unique(rows_R, return_inverse=True)
    x = self._read(self.images, unique)[inverse.reshape(-1)]
    return arrays.images(x, self.where), None if self.y is None else self.y[rows_R]

  def _read(self, dataset: Any, rows: Any) -> np.ndarray:
    """``dataset[rows]`` (increasing rows), a truncated file's error as a DataError naming the key."""
    try:
      with self.lock:
        return dataset[rows]
    except (OSError, ValueError) as e:
      raise DataError(f'{self.where}: {dataset.name.strip("/")!r} of shape {dataset.shape} could not be read '
                      f'({str(e).splitlines()[0]}): truncated or damaged? Expected {PATH}.') from None
