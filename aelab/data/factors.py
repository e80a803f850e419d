"""Ground-truth factors of the disentanglement benchmarks (dSprites, 3dshapes, MPI3D, Cars3D, smallNORB),
shared by their source modules (``aelab/data/sources``).

A benchmark source labels each row with its *flat factor index* (``np.ravel_multi_index`` of the row's
factor values over ``counts``, int32), and :func:`finish` turns the labels of the loaded dataset (in
memory or streamed) into ``Dataset.extras`` as ``aelab.data.sources.shapes2d`` does: ``factors_train``
(int32 N x K), ``factors_test`` (int32 M x K), ``factor_counts`` and ``factor_names``, plus a
:class:`FactorRows` sampler (``factor_sampler``) that the BetaVAE and FactorVAE scores draw from
(``aelab.eval.evaluators.disentanglement_scores``). The label of an example becomes one chosen factor.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from aelab.data import arrays
from aelab.errors import DataError


class FactorRows:
  """A factor sampler over a benchmark file (the protocol of ``aelab.eval.disentanglement.FactorSampler``):
  factors drawn uniformly and independently per factor, among the values of that factor that the rows hold
  (``values``: every value of a published file; a subset where a split holds some, e.g. a few tfds records),
  images read from the rows that hold them (the last such row where several do, e.g. smallNORB's instances).

  Args:
    reader: the file's rows (``reader[rows_R]`` uint8 images, 0..255).
    flat_N: the flat factor index of each row (int, N).
    counts: the number of values of each factor (K).

  Raises:
    DataError: a combination of the values held has no row (the grid is incomplete; the message says how many
      lack one).
  """

  def __init__(self, reader: arrays.Reader, flat_N: np.ndarray, counts: tuple[int, ...]):
    self.reader, self.counts = reader, tuple(int(c) for c in counts)
    self.row_of = np.full(math.prod(self.counts), -1, np.int64)
    self.row_of[np.asarray(flat_N)] = np.arange(len(flat_N))
    held_G = (self.row_of >= 0).reshape(self.counts)  # one bool per combination: no N x K temporary
    others = lambda k: tuple(j for j in range(len(self.counts)) if j != k)  # noqa: E731
    self.values = tuple(np.flatnonzero(held_G.any(axis=others(k))) for k in range(len(self.counts)))
    held = tuple(len(v) for v in self.values)
    missing = math.prod(held) - int(np.count_nonzero(held_G))
    if missing:
      raise DataError(f'{missing} of the {math.prod(held)} factor combinations {held} have no image; the '
                      'BetaVAE and FactorVAE scores need every combination.')

  def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` factor vectors, each factor uniform over its ``values`` and independent: int32 ``num x K``
    (over ``0..count-1`` for a complete grid: the draws of ``rng.integers(0, count, num)``)."""
    return np.stack([v[rng.integers(0, len(v), num)] for v in self.values], axis=-1).astype(np.int32)

  def images(self, factors_NxK: np.ndarray) -> np.ndarray:
    """The images of ``factors_NxK`` as the dataset stores them: uint8 ``N x D`` (0..255, flattened H x W x C;
    a run's encoder converts each batch, as for the stored test split: a quarter of float32's memory)."""
    rows = self.row_of[np.ravel_multi_index(tuple(np.asarray(factors_NxK).T), self.counts)]
    order = np.argsort(rows, kind='stable')  # read in file order (h5py needs increasing rows)
    x = np.empty((len(rows), *self.reader[rows[:1]].shape[1:]), np.uint8)
    x[order] = self.reader[rows[order]]
    return x.reshape(len(rows), -1)


def flat_index(factors_NxK: np.ndarray, counts: tuple[int, ...], where: str) -> np.ndarray:
  """The flat factor index of each row (int32 N). Raises DataError naming ``where`` for a value outside
  ``[0, counts)``."""
  factors_NxK = np.asarray(factors_NxK)
  if np.any(factors_NxK < 0) or np.any(factors_NxK >= np.asarray(counts)):
    raise DataError(f'{where}: factor values outside [0, counts) with counts {tuple(counts)}; is it the published '
                    'file?')
  return np.ravel_multi_index(tuple(factors_NxK.T), counts).astype(np.int32)


def classes(values_NxK: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
  """Float factor values (3dshapes' ``labels``) as class indices: each column's sorted distinct values
  numbered 0, 1, ...: (int32 N x K, the count of distinct values per column)."""
  columns = [np.unique(column, return_inverse=True) for column in np.asarray(values_NxK).T]
  factors = np.stack([inverse.reshape(-1) for _, inverse in columns], -1).astype(np.int32)
  return factors, tuple(len(values) for values, _ in columns)


def extras(reader: arrays.Reader, flat_N: np.ndarray, counts: tuple[int, ...], names: tuple[str, ...]) -> dict:
  """``factor_counts``, ``factor_names`` and, where every combination of the factor values the rows hold has an
  image, ``factor_sampler``."""
  found = {'factor_counts': tuple(int(c) for c in counts), 'factor_names': tuple(names)}
  try:
    found['factor_sampler'] = FactorRows(reader, flat_N, counts)
  except DataError:
    pass  # an incomplete grid: the scores that draw images are not computed
  return found


def finish(flat_N: np.ndarray | Callable[[], np.ndarray], counts: tuple[int, ...], label_factor: int):
  """The ``Read.finish`` of a benchmark source whose labels are flat factor indices (``flat_N`` of every row
  of the file, or a function returning it): the dataset with ``factors_train`` / ``factors_test`` in its
  extras and factor ``label_factor`` as its labels. A streamed dataset (no ``y_train``) takes its training
  factors from the rows its stream reads."""
  def done(ds: Any) -> Any:
    every = flat_N() if callable(flat_N) and ds.y_train is None else flat_N
    y_train = ds.y_train if ds.y_train is not None else every[ds.train.indices]
    f_train, f_test = (np.stack(np.unravel_index(y, counts), -1).astype(np.int32) for y in (y_train, ds.y_test))
    more = {'factors_train': f_train, 'factors_test': f_test}
    return dataclasses.replace(ds, y_train=f_train[:, label_factor], y_test=f_test[:, label_factor],
                               extras={**ds.extras, **more})
  return done


def check_array(where: str, key: str, array: Any, expected: tuple, expected_dtype: Any = None) -> None:
  """Raises DataError naming the file, the key and the expected shape (None: any length) and dtype of
  ``array`` (anything with ``shape`` and ``dtype``: numpy, h5py, ``NpyFile``)."""
  shape, dtype = tuple(array.shape), array.dtype
  fits = len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
  if not fits or (expected_dtype is not None and np.dtype(dtype) != np.dtype(expected_dtype)):
    want = 'x'.join('N' if e is None else str(e) for e in expected)
    has = 'x'.join(map(str, shape))
    want_dtype = f'{np.dtype(expected_dtype)} ' if expected_dtype is not None else ''
    raise DataError(f'{where}: {key!r} is {np.dtype(dtype)} {has or "a scalar"}, expected {want_dtype}{want}; is it '
                    'the published file?')


def write_npz(path: str | pathlib.Path, members: dict[str, tuple[tuple[int, ...], Any, Iterable[np.ndarray]]]) -> None:
  """Writes an uncompressed ``.npz`` (as ``np.savez`` does) whose arrays arrive in chunks of rows, so that a
  file larger than memory can be written: ``members`` maps each name to (shape, dtype, chunks). Raises
  ValueError when the chunks do not fill the shape."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED, allowZip64=True) as archive:
    for name, (shape, dtype, chunks) in members.items():
      with archive.open(f'{name}.npy', 'w', force_zip64=True) as f:
        header = {'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)), 'fortran_order': False,
                  'shape': tuple(shape)}
        np.lib.format.write_array_header_2_0(f, header)
        rows = 0
        for chunk in chunks:
          f.write(np.ascontiguousarray(chunk, dtype).tobytes())
          rows += len(chunk)
        if rows != shape[0]:
          raise ValueError(f'{name}: {rows} rows written for shape {shape}.')
