"""What every data source shares: the checks of examples and labels, the random-access reader protocol
and the errors of bad files, so that the in-memory path (``aelab.data.load``) and the streamed path
(``aelab.data.stream``) read a source through one reader and raise one set of errors.

A source's ``read(data_config)`` returns a :class:`Read`: its train (and, where it has one, test)
:class:`Split`, each a :class:`Reader` (``len(reader)``, ``reader[rows_R]`` the examples of rows
``rows_R``, ``reader.read(rows_R)`` examples and labels) that checks every example it returns
(:func:`images`, :func:`features`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from aelab.errors import DataError


class DataNotFoundError(DataError, FileNotFoundError):
  """data.path or data.test_path does not exist (a DataError, and a FileNotFoundError as before)."""


class DatasetUnavailableError(RuntimeError):
  """A named dataset could not be downloaded (e.g. no network); the message lists alternatives."""


class Reader:
  """Random access to a source's examples: ``__len__`` and ``read(rows_R) -> (x_Rx..., y_R or None)``
  (``rows_R`` ints in ``[0, len)``, in that order; None: every row, without a copy where possible).
  ``reader[rows_R]`` is ``read(rows_R)[0]``: the protocol the streamed path (grain) reads."""

  def __len__(self) -> int:
    raise NotImplementedError

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    raise NotImplementedError

  def __getitem__(self, rows_R: np.ndarray) -> np.ndarray:
    return self.read(np.asarray(rows_R))[0]


class Rows(Reader):
  """A reader over arrays already in memory (checked by the source): ``x`` N x ..., ``y`` int32 [N] or None."""

  def __init__(self, x: np.ndarray, y: np.ndarray | None = None):
    self.x, self.y = x, y

  def __len__(self) -> int:
    return len(self.x)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if rows_R is None:
      return self.x, self.y
    return self.x[rows_R], None if self.y is None else self.y[rows_R]


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a source: its reader, where it comes from (for messages) and the uint8 value meaning 1.0."""
  reader: Reader
  where: str
  x_max: int = 255


@dataclasses.dataclass(frozen=True)
class Read:
  """What a source's ``read(data_config)`` returns.

  Attributes:
    train: the training split (all of it when ``test`` is None: then ``data.test_fraction`` of it is held out
      with ``data.split_seed``).
    test: the source's own test split, or None.
    kind: 'image' (examples N x H x W x C) or 'tabular' (N x D).
    standardize: whether ``data.standardize`` may standardize tabular features (False: keep them as read).
    extras: ground truth beside the examples, copied into ``Dataset.extras``.
    finish: called on the loaded ``Dataset`` (after the split), returns it completed (e.g. shapes2d's factors).
    streams: whether tabular examples may stream (``aelab.data.stream``; images always may): True for a
      source whose features need no statistics of the whole split (``standardize`` False).
    test_fraction: the held-out fraction of a source with a single split when the source has its own field
      for it (``data.activations.test_fraction``); None: ``data.test_fraction``.
  """
  train: Split
  test: Split | None
  kind: str
  standardize: bool = True
  extras: dict[str, Any] = dataclasses.field(default_factory=dict)
  finish: Callable[[Any], Any] | None = None
  streams: bool = False
  test_fraction: float | None = None


def section(data_config: Any, name: str, fields: dict[str, tuple[Any, str]]) -> dict[str, Any]:
  """``data_config.<name>`` as a dict, a field absent or None taking its default from ``fields`` (a
  source's ``CONFIG``)."""
  given = dict(data_config.get(name) or {})
  return {k: given[k] if given.get(k) is not None else default for k, (default, _) in fields.items()}


# ---- paths ----

def required_path(data_config: Any, expected: str) -> pathlib.Path:
  """data.path as an existing path; raises DataError if unset, DataNotFoundError if missing."""
  if not data_config.get('path'):
    raise DataError(f'data.name={data_config.get("name")!r} needs data.path: {expected}.')
  return existing(data_config.path, expected)


def existing(path: str, expected: str) -> pathlib.Path:
  """Returns the path; raises DataNotFoundError naming it and the expected contents if missing."""
  p = pathlib.Path(path).expanduser()
  if not p.exists():
    raise DataNotFoundError(f'{p} does not exist; expected {expected}.')
  return p


def a_file(path: pathlib.Path, expected: str) -> pathlib.Path:
  """Returns path; raises DataError if it is a directory (a file is expected)."""
  if path.is_dir():
    raise DataError(f'{path} is a directory; expected {expected}: give the file itself.')
  return path


# What reading arbitrary bytes as npz / npy / gzip / text raises (numpy: ValueError, EOFError, OSError;
# zipfile: BadZipFile; zlib: error; gzip: BadGzipFile, an OSError, and EOFError; text: UnicodeDecodeError).
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error, MemoryError)


@contextlib.contextmanager
def reading(where: str, expected: str) -> Iterator[None]:
  """Turns what a damaged or mislabelled file raises while it is parsed into a DataError naming the file."""
  try:
    yield
  except DataError:
    raise
  except READ_ERRORS as e:
    reason = str(e).splitlines()[0] if str(e) else ''
    raise DataError(f'{where} could not be read ({type(e).__name__}: {reason}); expected {expected}. Is it '
                    'truncated, damaged or of another format?') from e


# ---- checks of examples and labels ----

def labels(y: Any, n: int, where: str) -> np.ndarray | None:
  """``y`` as int32 [n] class ids, or None; raises DataError unless y is None or n integer labels."""
  if y is None:
    return None
  y = np.asarray(y)
  if y.shape != (n,):
    raise DataError(f'{where}: labels of shape {y.shape} for {n} examples; '
                    f'give one label per example (shape ({n},)).')
  with np.errstate(invalid='ignore'):  # NaN and inf labels are not integral: told below
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
  if not integral:
    raise DataError(f'{where}: labels must be integers (class ids); found non-integer values.')
  if y.size and np.abs(y).max() >= 2 ** 31:
    raise DataError(f'{where}: labels must be class ids (int32), found {np.abs(y).max():g}.')
  return y.astype(np.int32)


def check_nonempty(x: np.ndarray, where: str) -> None:
  """Raises DataError if x has no examples (rows)."""
  if len(x) == 0:
    raise DataError(f'{where} has 0 examples; check the file or path points at the data.')


def check_finite(x: np.ndarray, where: str) -> None:
  """Raises DataError with the number of NaN and infinite values in x."""
  bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
  if bad:
    nan = int(np.count_nonzero(np.isnan(x)))
    raise DataError(f'{where} contains {nan} NaN and {bad - nan} infinite values (of {x.size}); '
                    'remove or impute them before loading.')


def check_sized(x: np.ndarray, where: str) -> None:
  """Raises DataError if one example has no values (a dimension after the first is 0)."""
  if 0 in x.shape[1:]:
    raise DataError(f'{where}: examples of shape {x.shape[1:]} hold no values (array of shape {x.shape}); '
                    'each example needs at least one value (a csv, a feature column besides label / y).')


def images(x: np.ndarray, where: str) -> np.ndarray:
  """N x H x W [x C] uint8 (0..255), bool or float in [0, 1] -> N x H x W x C: uint8 stays uint8 (bool
  becomes {0, 255}), floats become float32 after a range check. Raises DataError naming ``where``."""
  check_nonempty(x, where)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise DataError(f'{where}: images must be N x H x W or N x H x W x C, got shape {x.shape}.')
  check_sized(x, where)
  if x.dtype == np.uint8:
    return x
  if x.dtype == bool:
    return x.astype(np.uint8) * np.uint8(255)
  if not np.issubdtype(x.dtype, np.floating):
    raise DataError(f'{where}: images of dtype {x.dtype}; store uint8 (0..255) or floats in [0, 1].')
  check_finite(x, where)
  if x.min() < 0 or x.max() > 1:
    raise DataError(f'{where}: float images must lie in [0, 1], found [{x.min():g}, {x.max():g}]; '
                    'rescale them (e.g. x / 255) or store uint8.')
  return x.astype(np.float32)


def features(x: np.ndarray, where: str) -> np.ndarray:
  """Real N x D table -> float32 N x D; raises DataError if empty, not 2-D, complex or not finite."""
  if x.ndim != 2 or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
                         or x.dtype == bool):
    kind = ' (complex values: store the real and imaginary parts as separate features)' if (
        np.issubdtype(x.dtype, np.complexfloating)) else ''
    raise DataError(f'{where}: tabular data must be a real-valued N x D array, got {x.dtype} {x.shape}{kind}.')
  check_nonempty(x, where)
  check_sized(x, where)
  check_finite(x, where)
  with np.errstate(over='ignore'):
    x32 = x.astype(np.float32)
  if not np.isfinite(x32).all():
    raise DataError(f'{where}: values beyond the float32 range (|x| > 3.4e38); rescale them.')
  return x32
