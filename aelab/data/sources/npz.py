"""``data.name=npz``: the user's arrays in an ``.npz`` (``np.savez``) or ``.npy`` file (``data.path``; an
optional ``data.test_path`` likewise): array ``x`` (N x D features, or N x H x W [x C] images: uint8,
bool or floats in [0, 1]) and optional labels ``y`` (N integers; an ``.npy`` holds ``x`` alone).

One reader (:class:`NpzFile`) serves the in-memory and the streamed path: the rows of ``x`` are read in
place (:class:`NpyFile`, ``os.pread``) when ``x`` is stored uncompressed, else from the array that
``np.load`` decompresses. This module is also the example to copy for a new source
(``data.name=my_lab.my_source``): ``SECTION``, ``CONFIG``, ``PATH``, ``validate``, ``adapt``, ``read``.
"""
from __future__ import annotations

import os
import pathlib
import tokenize
import weakref
import zipfile
from typing import Any

import numpy as np

from aelab.data import arrays
from aelab.errors import DataError

SECTION = None  # no config section of its own: data.path and data.test_path say everything
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = "an .npz file with array 'x' (N x D, or N x H x W [x C]) and optional 'y' (N labels), or an .npy of x"

ZIP_MAGIC = b'PK\x03\x04'  # An .npz is a zip archive of .npy files.
NPY_MAGIC = b'\x93NUMPY'


def validate(data_config: Any) -> None:
  """No fields of its own (data.path and data.test_path are checked when read)."""


def adapt(config: Any) -> Any:
  """The config unchanged."""
  return config


def read(data_config: Any) -> arrays.Read:
  """The train file (``data.path``) and, if given, the test file (``data.test_path``).

  Raises:
    DataNotFoundError: a file does not exist.
    DataError: a file is unset, a directory, no .npz / .npy, has no ``x``, or holds bad values (see
      ``aelab.data.arrays``).
  """
  train = NpzFile(arrays.required_path(data_config, PATH), 'train')
  test_path = data_config.get('test_path')
  test = NpzFile(arrays.existing(test_path, PATH), 'test') if test_path else None
  kind = 'image' if train.ndim > 2 else 'tabular'
  return arrays.Read(arrays.Split(train, train.where), None if test is None else arrays.Split(test, test.where), kind)


def stored_megabytes(data_config: Any) -> float:
  """The stored size of ``x`` in MB, from the file's header (``aelab.data.stream.in_memory_megabytes``); 0
  when it cannot be read in place (compressed, damaged, missing: ``read`` says why or reads it whole)."""
  path = data_config.get('path')
  try:
    npy = NpyFile(path)
  except (DataError, TypeError, *arrays.READ_ERRORS):
    return 0.0
  return float(np.prod(npy.shape)) * npy.dtype.itemsize / 2**20


class NpzFile(arrays.Reader):
  """Rows of ``x`` (checked as images when ``x`` has more than 2 dims, else as features) and labels ``y``.

  Raises DataError for a file that is no .npz / .npy archive, lacks ``x``, or holds Python objects."""

  def __init__(self, path: pathlib.Path, role: str):
    self.where = f'npz {role} file {path}'
    with arrays.reading(self.where, PATH):
      with open(arrays.a_file(path, PATH), 'rb') as f:
        start = f.read(len(ZIP_MAGIC))
      if start not in (ZIP_MAGIC, NPY_MAGIC[:len(ZIP_MAGIC)]):
        found = 'is empty (0 bytes)' if not start else f'starts with {start!r}, not {ZIP_MAGIC!r}'
        raise DataError(f'{self.where} {found}: it is not an .npz archive (nor an .npy file); save it as '
                        'np.savez(path, x=features, y=labels).')
      self.x = _in_place(path) or _load(path, 'x', self.where)
      y = _load(path, 'y', self.where) if start == ZIP_MAGIC else None
    self.y, self.ndim = arrays.labels(y, len(self.x), self.where) if self.x.ndim else y, self.x.ndim

  def __len__(self) -> int:
    return len(self.x) if self.x.ndim else 0

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if rows_R is None:
      x = self.x.read_all() if isinstance(self.x, NpyFile) else self.x
    else:
      x = self.x[rows_R]
    x = arrays.images(x, self.where) if x.ndim > 2 else arrays.features(x, self.where)
    return x, self.y if self.y is None or rows_R is None else self.y[rows_R]


def _in_place(path: pathlib.Path) -> NpyFile | None:
  """``x`` read in place, or None when it cannot be (compressed, Fortran-ordered, objects, damaged):
  then ``np.load`` reads it, or says what is wrong."""
  try:
    return NpyFile(path)
  except (DataError, *arrays.READ_ERRORS):
    return None


def _load(path: pathlib.Path, name: str, where: str) -> np.ndarray | None:
  """Array ``name`` of the .npz (or the .npy's array for ``x``); None for an absent ``y``."""
  loaded = np.load(path, allow_pickle=False)
  if isinstance(loaded, np.ndarray):
    return loaded if name == 'x' else None
  with loaded as members:
    if name not in members.files:
      if name == 'y':
        return None
      raise DataError(f"{where} has no array 'x' (it has: {members.files}); save the examples as "
                      'x, e.g. np.savez(path, x=features, y=labels).')
    try:
      return members[name]
    except ValueError as e:
      if 'allow_pickle' not in str(e):
        raise
      raise DataError(f'{where}: array {name!r} holds Python objects (dtype object), which aelab does not '
                      'unpickle; store numbers, e.g. np.savez(path, x=x.astype(np.float32)).') from None


class NpyFile:
  """Random access to the rows of an array stored in an ``.npy`` file or an uncompressed ``.npz`` member,
  read with ``os.pread`` (no memory map: the pages of a mapped file that a process touches count as its
  resident memory, and with the kernel's fault-around a random row maps up to megabytes of the file, so a
  mapped 784 MB file was seen to take ~1.2 GB). Indexing with an int array returns those rows.

  Args:
    path: the ``.npy`` or ``.npz`` file.
    member: the array's name in an ``.npz`` (``x``).

  Raises:
    DataError: the member is missing, compressed (``np.savez_compressed``: re-save with ``np.savez``,
      or set ``data.stream=False`` when the images fit in memory), not a C-ordered numeric array of at
      least one dimension, or longer than the file.
  """

  def __init__(self, path: str | os.PathLike, member: str = 'x'):
    self.path = pathlib.Path(path)
    offset, size = _member_span(self.path, member) if zipfile.is_zipfile(self.path) else (0, os.path.getsize(path))
    with open(self.path, 'rb') as f:
      f.seek(offset)
      try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, fortran, self.dtype = read(f)
      except (ValueError, EOFError, SyntaxError, tokenize.TokenError) as e:  # what numpy's header parser raises
        raise DataError(f'{path}: not an .npy / .npz array ({e}); save it with np.savez or np.save.') from e
      self.start = f.tell()
    if fortran or self.dtype.hasobject or not self.shape:
      raise DataError(f'{path}: {member!r} must be a C-ordered numeric array of rows to be read in place.')
    self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
    if self.start + self.shape[0] * self.row_bytes > offset + size:
      raise DataError(f'{path}: {member!r} of shape {self.shape} is longer than the file: truncated or damaged.')
    self.ndim = len(self.shape)
    self._fd = os.open(self.path, os.O_RDONLY)
    weakref.finalize(self, os.close, self._fd)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (ints in [0, N)), in that order: an array of len(rows) x shape[1:]."""
    rows = np.asarray(rows)
    out = np.empty((len(rows), self.row_bytes), np.uint8)  # read into place: no second copy of the rows
    for i, r in enumerate(rows):
      if os.preadv(self._fd, [out[i]], self.start + int(r) * self.row_bytes) != self.row_bytes:
        raise DataError(f'{self.path}: row {int(r)} lies past the end of the file; is it truncated?')
    return out.view(self.dtype).reshape(len(rows), *self.shape[1:])

  def read_all(self) -> np.ndarray:
    """Every row, in one read: an array of ``shape``."""
    count = int(np.prod(self.shape))
    return np.fromfile(self.path, self.dtype, count, offset=self.start).reshape(self.shape)


def _member_span(path: pathlib.Path, member: str) -> tuple[int, int]:
  """Where the bytes of ``member``.npy start in the zip archive ``path`` (after its local header), and
  how many there are."""
  with zipfile.ZipFile(path) as archive:
    name = f'{member}.npy'
    if name not in archive.namelist():
      raise DataError(f"{path} has no array {member!r} (it has: {archive.namelist()}); save the images "
                      f'as {member}, e.g. np.savez(path, x=images, y=labels).')
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
      raise DataError(f'{path}: array {member!r} is compressed (np.savez_compressed), and streaming reads '
                      'its rows in place: re-save it uncompressed with np.savez(path, x=..., y=...), or '
                      'set data.stream=False if the images fit in memory.')
  with open(path, 'rb') as f:
    f.seek(info.header_offset + 26)
    name_len, extra_len = np.frombuffer(f.read(4), '<u2')
  return info.header_offset + 30 + int(name_len) + int(extra_len), info.file_size
