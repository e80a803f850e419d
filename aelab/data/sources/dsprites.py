"""``data.name=dsprites``: DeepMind's dSprites file (Matthey et al. 2017),
``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (``data.path``): ``imgs`` uint8 N x 64 x 64 in {0, 1}
(737,280 in the published file), ``latents_classes`` int64 N x 6 (color 1, shape 3, scale 6, orientation
40, posX 32, posY 32) and ``latents_values`` float64 N x 6. The images are read as 0..255 (x 255).

The factors are ``latents_classes`` without the constant color, as disentanglement_lib's ``DSprites``
(``latent_factor_indices = [1, 2, 3, 4, 5]``): shape, scale, orientation, pos_x, pos_y, with the counts of
the file's classes; they reach ``Dataset.extras`` as ``aelab.data.factors`` describes, the label of an
example is its shape. ``imgs`` stored uncompressed (``np.savez``) is read in place and can stream; the
published file is compressed (``np.savez_compressed``) and is decompressed into memory (737,280 x 4 KiB =
3 GB). ``aelab.data.sources.shapes2d.write_dsprites`` writes shapes2d's images in this format.
"""
from __future__ import annotations

import pathlib
import zipfile
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.data.sources.npz import NpyFile
from aelab.errors import DataError

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = ("DeepMind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz (imgs uint8 N x 64 x 64, latents_classes "
        'int N x 6, latents_values float N x 6)')
KEYS = ('imgs', 'latents_classes', 'latents_values')
FACTOR_NAMES = ('shape', 'scale', 'orientation', 'pos_x', 'pos_y')
PUBLISHED_COUNTS = (1, 3, 6, 40, 32, 32)  # color, shape, scale, orientation, posX, posY
IMAGE_SIZE = 64


def validate(data_config: Any) -> None:
  """No fields of its own (data.path is checked when read)."""


def adapt(config: Any) -> Any:
  """The setting of shapes2d (``aelab.data.sources.shapes2d.adapt``: Locatello et al. 2019)."""
  from aelab.data.sources import shapes2d  # noqa: PLC0415
  return shapes2d.adapt(config)


def read(data_config: Any) -> arrays.Read:
  """Every image of the file, held out by ``data.test_fraction``, labels the flat factor indices until
  :func:`aelab.data.factors.finish` turns them into factors.

  Raises:
    DataNotFoundError: data.path does not exist.
    DataError: not an npz archive, a missing key, a key of another shape or dtype (the message names the
      file, the key and the expected shape), a truncated file, class values outside the counts.
  """
  path = arrays.a_file(arrays.required_path(data_config, PATH), PATH)
  reader = Sprites(path)
  counts = tuple(int(c) for c in reader.classes_NxK.max(0) + 1)[1:]
  flat_N = factors.flat_index(reader.classes_NxK[:, 1:], counts, reader.where)
  reader.y = flat_N
  return arrays.Read(arrays.Split(reader, reader.where), None, 'image',
                     extras=factors.extras(reader, flat_N, counts, FACTOR_NAMES),
                     finish=factors.finish(flat_N, counts, FACTOR_NAMES.index('shape')))


class Sprites(arrays.Reader):
  """The rows of ``imgs`` (uint8 H x W x 1, 0..255) and their flat factor index; checks every key's shape."""

  def __init__(self, path: pathlib.Path):
    self.where, self.y = f'dsprites file {path}', None
    with arrays.reading(self.where, PATH):
      if not zipfile.is_zipfile(path):
        raise DataError(f'{self.where} is not an .npz archive; expected {PATH}.')
      with np.load(path, allow_pickle=False) as members:
        missing = [k for k in KEYS if k not in members.files]
        if missing:
          raise DataError(f'{self.where} has no {missing[0]!r} (it has {members.files}); expected {PATH}.')
        self.classes_NxK = members['latents_classes']
        values = members['latents_values']
        self.imgs = _imgs(path, members, self.where)
    n = len(self.imgs)
    factors.check_array(self.where, 'imgs', self.imgs, (None, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for key, array in (('latents_classes', self.classes_NxK), ('latents_values', values)):
      factors.check_array(self.where, key, array, (n, len(PUBLISHED_COUNTS)))
    if not np.issubdtype(self.classes_NxK.dtype, np.integer):
      raise DataError(f"{self.where}: 'latents_classes' is {self.classes_NxK.dtype}, expected int64 N x 6.")

  def __len__(self) -> int:
    return len(self.imgs)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if rows_R is None:
      x = self.imgs.read_all() if isinstance(self.imgs, NpyFile) else self.imgs
      return _as_255(x, self.where), self.y
    return _as_255(self.imgs[np.asarray(rows_R)], self.where), None if self.y is None else self.y[rows_R]


def _imgs(path: pathlib.Path, members: Any, where: str) -> Any:
  """``imgs`` read in place when stored uncompressed, else decompressed into memory."""
  with zipfile.ZipFile(path) as archive:
    stored = archive.getinfo('imgs.npy').compress_type == zipfile.ZIP_STORED
  return NpyFile(path, 'imgs') if stored else members['imgs']


def _as_255(x: np.ndarray, where: str) -> np.ndarray:
  """Images in {0, 1} as uint8 {0, 255}, N x H x W x 1 (checked by ``arrays.images``)."""
  if x.size and x.max() > 1:
    raise DataError(f"{where}: 'imgs' holds values up to {x.max()}, expected {{0, 1}} as dSprites stores them.")
  return arrays.images(np.asarray(x) * np.uint8(255), where)


def stored_megabytes(data_config: Any) -> float:
  """The images' stored size (uint8) in MB when ``imgs`` is stored uncompressed (it can stream), else 0."""
  try:
    npy = NpyFile(data_config.path, 'imgs')
    return float(np.prod(npy.shape)) * npy.dtype.itemsize / 2**20
  except (DataError, *arrays.READ_ERRORS):
    return 0.0
