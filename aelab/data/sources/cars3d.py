"""``data.name=cars3d``: the Cars3D folder (Reed et al. 2015, Deep Visual Analogy-Making; ``data.path``) of
``*_mesh.mat`` files (``car_001_mesh.mat`` ...), read as disentanglement_lib's ``Cars3D`` reads them
(``data/ground_truth/cars3d.py``): each file's ``im`` is uint8 128 x 128 x 3 x 24 x 4 (height, width, colour,
azimuth, elevation), its 96 images resized to 64 x 64 (PIL's ``thumbnail`` with Lanczos, as there).

Factors elevation (4), azimuth (24) and object type (one per file, 183 in the published folder, in sorted
file-name order: disentanglement_lib takes the directory's listing order), in ``Dataset.extras`` as
``aelab.data.factors`` describes; the label of an example is its object type. Read into memory
(183 x 96 images of 64 x 64 x 3: 216 MB).
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.errors import DataError

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = "the Cars3D folder of *_mesh.mat files, each with 'im' uint8 128 x 128 x 3 x 24 x 4"
FACTOR_NAMES = ('elevation', 'azimuth', 'object_type')
MESH_SHAPE = (128, 128, 3, 24, 4)
IMAGE_SIZE = 64


def validate(data_config: Any) -> None:
  """No fields of its own (data.path is checked when read)."""


def adapt(config: Any) -> Any:
  """No binarization (``data.binarize='none'``): the colour images are the Bernoulli likelihood's targets as
  they are, as in disentanglement_lib. Returns ``config``, changed."""
  config.data.binarize = 'none'
  return config


def read(data_config: Any) -> arrays.Read:
  """Every image of every mesh file, held out by ``data.test_fraction``; labels the flat factor indices
  until :func:`aelab.data.factors.finish` turns them into factors.

  Raises:
    DataNotFoundError: data.path does not exist.
    DataError: data.path is no folder or holds no ``*_mesh.mat``, a file is no MATLAB file (or truncated),
      lacks ``im`` or holds it in another shape (the message names the file, the key and the expected shape).
  """
  folder = arrays.required_path(data_config, PATH)
  if not folder.is_dir():
    raise DataError(f'cars3d: {folder} is no folder; expected {PATH}.')
  files = sorted(folder.glob('*_mesh.mat'))
  if not files:
    raise DataError(f'cars3d: {folder} holds no *_mesh.mat file; expected {PATH}.')
  x = np.concatenate([mesh_images(path) for path in files])
  counts = (MESH_SHAPE[4], MESH_SHAPE[3], len(files))
  # image j of file i: azimuth j // 4, elevation j % 4 (disentanglement_lib's order)
  j, i = np.arange(len(x)) % 96, np.arange(len(x)) // 96
  flat_N = factors.flat_index(np.stack([j % 4, j // 4, i], 1), counts, f'cars3d folder {folder}')
  reader = arrays.Rows(arrays.images(x, f'cars3d folder {folder}'), flat_N)
  return arrays.Read(arrays.Split(reader, f'cars3d folder {folder}'), None, 'image',
                     extras=factors.extras(reader, flat_N, counts, FACTOR_NAMES),
                     finish=factors.finish(flat_N, counts, FACTOR_NAMES.index('object_type')))


def mesh_images(path: pathlib.Path) -> np.ndarray:
  """The 96 images of one ``*_mesh.mat`` as uint8 96 x 64 x 64 x 3, in disentanglement_lib's order
  (``einsum('abcde->deabc')``: azimuth major, elevation minor), each resized by ``PIL.Image.thumbnail``."""
  import scipy.io  # noqa: PLC0415
  from PIL import Image  # noqa: PLC0415
  where = f'cars3d file {path}'
  with arrays.reading(where, PATH):
    try:
      mat = scipy.io.loadmat(path, variable_names=['im'])
    except (NotImplementedError, TypeError) as e:  # a MATLAB v7.3 (HDF5) or foreign file
      raise DataError(f'{where} could not be read as a MATLAB file ({e}); expected {PATH}.') from None
  if 'im' not in mat:
    raise DataError(f"{where} has no 'im'; expected {PATH}.")
  factors.check_array(where, 'im', mat['im'], MESH_SHAPE, np.uint8)
  mesh = np.einsum('abcde->deabc', mat['im']).reshape(-1, *MESH_SHAPE[:3])
  out = np.empty((len(mesh), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  for k, image in enumerate(mesh):
    picture = Image.fromarray(image)
    picture.thumbnail((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    out[k] = np.asarray(picture)
  return out
