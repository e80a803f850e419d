"""``data.name=csv``: a numeric table (``data.path``; an optional ``data.test_path`` with the same columns),
comma-separated, with an optional header row and an optional label column named ``label`` or ``y``.
Features are tabular (standardized with the train statistics unless ``data.standardize=False``), so
:func:`adapt` gives a config an identity output and an MSE (AE) or Gaussian (VAE) likelihood."""
import pathlib
import warnings
from typing import Any

import numpy as np

from aelab.data import arrays
from aelab.errors import DataError

SECTION = None
CONFIG: dict[str, tuple[Any, str]] = {}
PATH = 'a numeric .csv file, optional header row, optional label column named label or y'


def validate(data_config: Any) -> None:
  """No fields of its own (data.path and data.test_path are checked when read)."""


def adapt(config: Any) -> Any:
  """For standardized, unbounded features: an MSE likelihood (``config.adapt_to_data`` makes it Gaussian for a
  family that needs a normalized one, the VAEs) with an identity output, no binarization, unclipped Gaussian
  corruption. Returns ``config``, changed."""
  config.model.update(likelihood='mse', output_activation='identity')
  config.data.binarize = 'none'
  config.corruption.clip = False
  return config


def read(data_config: Any) -> arrays.Read:
  """The train table and, if given, the test table. Raises DataNotFoundError, DataError (not numbers,
  ragged rows, a header naming another number of columns, NaN / inf, no rows)."""
  train = _split(arrays.required_path(data_config, PATH), 'train')
  test_path = data_config.get('test_path')
  test = _split(arrays.existing(test_path, PATH), 'test') if test_path else None
  return arrays.Read(train, test, 'tabular')


def _split(path: pathlib.Path, role: str) -> arrays.Split:
  """Reads one CSV; a first row that is not all numbers is a header naming the columns."""
  where = f'csv {role} file {path}'
  expected = 'a numeric comma-separated text file'
  with arrays.reading(where, expected):
    header = _header(arrays.a_file(path, expected))
  with warnings.catch_warnings():  # loadtxt warns on an empty file; features() raises instead.
    warnings.simplefilter('ignore', UserWarning)
    try:
      table = np.loadtxt(path, delimiter=',', skiprows=int(header is not None), ndmin=2, quotechar='"')
    except UnicodeError as e:
      raise DataError(f'{where} is not text ({e}); expected {expected}.') from e
    except ValueError as e:
      raise DataError(f'{where}: {e} Every value must be a number (comma-separated).') from e
  arrays.check_nonempty(table if table.size else table[:0], where)  # a header alone: no rows to index
  if header is not None and len(header) != table.shape[1]:
    raise DataError(f'{where}: the header names {len(header)} columns, the rows have {table.shape[1]}.')
  label = next((i for i, n in enumerate(header or []) if n.lower() in ('label', 'y')), None)
  x, y = (table, None) if label is None else (np.delete(table, label, axis=1), table[:, label])
  x = arrays.features(x, where)
  return arrays.Split(arrays.Rows(x, arrays.labels(y, len(x), where)), where)


def _header(path: pathlib.Path) -> list[str] | None:
  """The column names if the first row is not all numeric, else None."""
  with open(path) as f:
    names = [s.strip().strip('"\'') for s in f.readline().split(',')]
  try:
    [float(n) for n in names]  # pylint: disable=expression-not-assigned
  except ValueError:
    return names
  return None
