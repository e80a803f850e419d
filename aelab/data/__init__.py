"""Datasets as host arrays, ready to be put on the device once.

`load(config.data)` returns a `Dataset`: flattened train and test examples (uint8 images, float32
tables: see `Dataset`), optional int32 labels, the shape of one example and its kind ('image' or
'tabular'). Sources (`data.name`):

- 'digits': scikit-learn's bundled 8x8 handwritten digits (1,797 images), the offline default.
- 'idx': a directory of MNIST-format IDX files (train-* and t10k-*, gzip-compressed or not).
- 'npz': a file with array `x` (N x D, or N x H x W [x C]) and optional labels `y`.
- 'csv': a numeric table with an optional header row and an optional label column `label` or `y`.
- 'images': a folder of PNG / JPEG files (labels from class subfolders), resized to data.image_size
  with data.channels (`aelab.data.images`).
- 'superposition': sparse features in superposition, generated (aelab/superposition.py, fields
  data.superposition); the true feature directions in `Dataset.extras['feature_directions']`.
- 'shapes2d': the dSprites-like ground-truth images of `aelab/shapes2d.py` (grid `data.shapes2d_counts`,
  `data.shapes2d_size` pixels); labels are the shape, and `Dataset.extras` holds the factors.
- any tensorflow-datasets image dataset ('mnist', 'fashion_mnist', 'cifar10', ...), read through
  `tfds.data_source` (no TensorFlow needed; tfds is imported only when such a name is used).

Images stay uint8 (4x less memory than float32; `Dataset.to_float32` scales a batch to [0, 1], inside
the compiled epoch) and are optionally binarized; tabular features are standardized with the
train statistics. A source with a single split is split with
`jax.random.permutation(jax.random.key(data.split_seed), n)`: the first n - round(n * test_fraction)
permuted examples train, the rest test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import math
import pathlib
import re
import struct
import urllib.error
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.data import images, shapes2d, superposition
from aelab.errors import DataError  # data.DataError, as before; aelab.data.images raises it too

_LOCAL_SOURCES = ('digits', 'idx', 'npz', 'csv', 'shapes2d', 'images')
_BINARIZE = ('none', 'static', 'dynamic')
_IDX_IMAGES = re.compile(r'images[-.]idx3-ubyte(\.gz)?$')
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049  # 0x0803: uint8, 3 dims; 0x0801: uint8, 1 dim.
# tfds retries a failed download 10 times with exponential backoff: about 200 s before an offline
# machine gives up. Three tries fail in about a second and still ride out a transient error.
_TFDS_DOWNLOAD_RETRIES = 3
_TFDS_READ_CHUNK = 1024  # records per batched read of a tfds data source


class DataNotFoundError(DataError, FileNotFoundError):
  """data.path or data.test_path does not exist (a DataError, and a FileNotFoundError as before)."""


class DatasetUnavailableError(RuntimeError):
  """A named dataset could not be downloaded (e.g. no network); the message lists alternatives."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test examples of one dataset, on the host (numpy), stored compactly.

  The stored arrays are what goes on the device; the float32 views are what host code reads.

  Attributes:
    train: [N, D] flattened train examples as stored. Images: uint8, the value `x_max` meaning 1.0
      (0..255, or 0..16 for 'digits'; binarized images hold {0, x_max}); images given as floats in
      [0, 1] (an npz of floats) stay float32. Tabular: float32, standardized with the train mean and
      std. `to_float32` turns a batch of either into float32.
    y_train: int32 [N] labels, or None when the source has none.
    test: [M, D] test examples, stored like `train` (binarized once when data.binarize='dynamic').
    y_test: int32 [M] labels, or None.
    shape: shape of one example before flattening: (H, W, C) for images, (D,) for tabular.
    kind: 'image' or 'tabular'.
    name: data.name of the source.
    extras: source-specific ground truth beside the examples, empty for most sources: for 'superposition'
      ``feature_directions`` (n x D); for 'shapes2d' ``factors_train`` (int32 [N, K]), ``factors_test``
      (int32 [M, K]) and ``factor_counts`` (int [K]).
    x_max: the stored uint8 value that means 1.0 (ignored for float32 arrays).

  Properties `x_train` and `x_test` are the float32 [N, D] views (images in [0, 1], {0, 1} when
  binarized), computed on first access and cached; the engine never reads them.
  """
  train: np.ndarray
  y_train: np.ndarray | None
  test: np.ndarray
  y_test: np.ndarray | None
  shape: tuple[int, ...]
  kind: str
  name: str
  extras: dict[str, Any] = dataclasses.field(default_factory=dict)
  x_max: int = 255

  def to_float32(self, x: Any) -> Any:
    """A batch of stored examples (numpy or jax, any shape) as float32: uint8 / x_max, floats as they
    are. Jittable (the dtype is static): the compiled epoch converts each batch on the device."""
    return to_float32(x, self.x_max)

  @functools.cached_property
  def x_train(self) -> np.ndarray:
    """float32 [N, D] train examples (a host copy of `train` converted by `to_float32`)."""
    return np.asarray(self.to_float32(self.train))

  @functools.cached_property
  def x_test(self) -> np.ndarray:
    """float32 [M, D] test examples (a host copy of `test` converted by `to_float32`)."""
    return np.asarray(self.to_float32(self.test))


def to_float32(x: Any, x_max: float) -> Any:
  """uint8 examples (numpy or jax) -> float32 x * (1 / x_max) (e.g. 0..255 -> [0, 1]); float arrays as they
  are. A multiplication by the float32 reciprocal, which is what XLA makes of a division by a constant,
  so host and device give the same numbers (within 1 ulp of x / x_max; exact for x_max = 1, 16)."""
  if x.dtype != np.uint8:
    return x
  return x.astype(np.float32) * np.float32(1 / x_max)


class _Split(NamedTuple):
  """One split: x [N, ...] (images N x H x W x C, uint8 0..x_max or float32 in [0, 1]; tabular float32),
  y int32 [N] or None."""
  x: np.ndarray
  y: np.ndarray | None
  where: str  # Which file or split, for error messages.
  x_max: int = 255  # The uint8 value that means 1.0.


@dataclasses.dataclass(frozen=True)
class _Options:
  """The fields of config.data that load reads, and their defaults (for fields absent or None)."""
  name: str = 'digits'
  path: str | None = None  # None or '': absent, here and for test_path and tfds_data_dir.
  test_path: str | None = None
  test_fraction: float = 0.2
  split_seed: int = 0
  binarize: str = 'none'
  binarize_threshold: float = 0.5
  standardize: bool = True
  tfds_data_dir: str | None = None
  max_train_examples: int | None = None  # None or 0: all.
  max_test_examples: int | None = None
  shapes2d_counts: tuple[int, ...] = (3, 6, 40, 32, 32)
  shapes2d_size: int = 64
  image_size: int | tuple[int, int] | None = None  # 'images': None or 0: the first image's size.
  channels: int | None = None  # 'images': 1 or 3; None or 0: from the first image.


def load(data_config: ml_collections.ConfigDict) -> Dataset:
  """Loads, splits and transforms the dataset that `config.data` names.

  Fields read (defaults in brackets): name ['digits'], path, test_path, test_fraction [0.2],
  split_seed [0], binarize ['none'], binarize_threshold [0.5], standardize [True],
  tfds_data_dir, max_train_examples, max_test_examples [None or 0: all].

  Raises:
    DataError: invalid config field, unknown name, or bad data (NaN/inf, empty, no features,
      complex or object values, mismatched shapes or labels, float images outside [0, 1], a file that
      is unreadable, truncated or not of its format, a directory where a file belongs).
    DataNotFoundError: data.path or data.test_path does not exist (a DataError and a FileNotFoundError).
    DatasetUnavailableError: a tfds dataset could not be downloaded (e.g. no network).
  """
  opts = _options(data_config)
  if opts.name == 'superposition':
    return _load_superposition(data_config)
  train, test, kind = _LOADERS.get(opts.name, _load_tfds)(opts)
  if test is None:
    train, test = _holdout(train, opts.test_fraction, opts.split_seed)
  _check_pair(train, test)
  train, test = _head(train, opts.max_train_examples), _head(test, opts.max_test_examples)
  train, test = _same_storage(train, test)
  x_train, x_test = _transform(train, test, kind, opts)
  ds = Dataset(x_train, train.y, x_test, test.y, train.x.shape[1:], kind, opts.name, x_max=train.x_max)
  return _with_factors(ds, opts) if opts.name == 'shapes2d' else ds


def test_images(x: np.ndarray, data_config: ml_collections.ConfigDict, where: str) -> np.ndarray:
  """Test images N x H x W [x C] (uint8, bool or floats in [0, 1]) as `load` returns them: float32
  N x D in [0, 1], binarized per `data.binarize` (once, with a fixed key, for 'dynamic'). For sources
  that read the test split themselves (aelab/stream.py). Raises DataError as `load` does."""
  split = _Split(_images(np.asarray(x), where), None, where)
  return np.asarray(to_float32(_transform(split, split, 'image', _options(data_config))[1], split.x_max))


def dynamic_binarize(key: jax.Array, x: jax.Array) -> jax.Array:
  """Samples Bernoulli(x) elementwise: float32 {0, 1}, same shape as x (values in [0, 1]). Jittable."""
  return jax.random.bernoulli(key, x).astype(jnp.float32)


# ---- config ----

def _options(config: ml_collections.ConfigDict) -> _Options:
  """Reads config.data with defaults; raises DataError naming the bad field and its allowed values."""
  given = {f.name: config.get(f.name) for f in dataclasses.fields(_Options)}
  opts = _Options(**{k: v for k, v in given.items() if v is not None})
  if not isinstance(opts.name, str) or not opts.name:
    raise DataError(f'data.name={opts.name!r}: give one of {_LOCAL_SOURCES} or a tfds dataset name.')
  for field in ('path', 'test_path', 'tfds_data_dir'):
    if not isinstance(getattr(opts, field), (str, type(None))):
      raise DataError(f'data.{field}={getattr(opts, field)!r} must be a path (a string).')
  if opts.binarize not in _BINARIZE:
    raise DataError(f'data.binarize={opts.binarize!r} is not one of {_BINARIZE}.')
  if not isinstance(opts.test_fraction, (int, float)) or not 0 < opts.test_fraction < 1:
    raise DataError(f'data.test_fraction={opts.test_fraction!r} must lie in (0, 1), e.g. 0.2.')
  if not isinstance(opts.binarize_threshold, (int, float)) or not 0 <= opts.binarize_threshold <= 1:
    raise DataError(f'data.binarize_threshold={opts.binarize_threshold} must lie in [0, 1].')
  if not isinstance(opts.split_seed, int) or isinstance(opts.split_seed, bool) or abs(opts.split_seed) >= 2 ** 31:
    raise DataError(f'data.split_seed={opts.split_seed!r} must be an int below 2**31.')
  for count in (opts.max_train_examples, opts.max_test_examples):
    if count is not None and (not isinstance(count, int) or count < 0):
      raise DataError(f'data.max_*_examples={count!r} must be an int >= 0 (0 or None: all).')
  return opts


def _required_path(opts: _Options, expected: str) -> pathlib.Path:
  """data.path as an existing path; raises DataError if unset, DataNotFoundError if missing."""
  if not opts.path:
    raise DataError(f'data.name={opts.name!r} needs data.path: {expected}.')
  return _existing(opts.path, expected)


def _existing(path: str, expected: str) -> pathlib.Path:
  """Returns the path; raises DataNotFoundError naming it and the expected contents if missing."""
  p = pathlib.Path(path).expanduser()
  if not p.exists():
    raise DataNotFoundError(f'{p} does not exist; expected {expected}.')
  return p


def _file(path: pathlib.Path, expected: str) -> pathlib.Path:
  """Returns path; raises DataError if it is a directory (a file is expected)."""
  if path.is_dir():
    raise DataError(f'{path} is a directory; expected {expected}: give the file itself.')
  return path


# What reading arbitrary bytes as npz / npy / gzip / text raises (numpy: ValueError, EOFError, OSError;
# zipfile: BadZipFile; zlib: error; gzip: BadGzipFile, an OSError, and EOFError; text: UnicodeDecodeError).
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error, MemoryError)


@contextlib.contextmanager
def _reading(where: str, expected: str) -> Iterator[None]:
  """Turns what a damaged or mislabelled file raises while it is parsed into a DataError naming the file."""
  try:
    yield
  except DataError:
    raise
  except _READ_ERRORS as e:
    reason = str(e).splitlines()[0] if str(e) else ''
    raise DataError(f'{where} could not be read ({type(e).__name__}: {reason}); expected {expected}. Is it '
                    'truncated, damaged or of another format?') from e


# ---- validation and transforms ----

def _split(x: np.ndarray, y: Any, where: str) -> _Split:
  """Pairs examples with labels; raises DataError unless y is None or N integer labels."""
  if y is None:
    return _Split(x, None, where)
  y = np.asarray(y)
  if y.shape != (len(x),):
    raise DataError(f'{where}: labels of shape {y.shape} for {len(x)} examples; '
                    f'give one label per example (shape ({len(x)},)).')
  with np.errstate(invalid='ignore'):  # NaN and inf labels are not integral: told below
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
  if not integral:
    raise DataError(f'{where}: labels must be integers (class ids); found non-integer values.')
  if y.size and np.abs(y).max() >= 2 ** 31:
    raise DataError(f'{where}: labels must be class ids (int32), found {np.abs(y).max():g}.')
  return _Split(x, y.astype(np.int32), where)


def _check_nonempty(x: np.ndarray, where: str) -> None:
  """Raises DataError if x has no examples (rows)."""
  if len(x) == 0:
    raise DataError(f'{where} has 0 examples; check the file or path points at the data.')


def _check_finite(x: np.ndarray, where: str) -> None:
  """Raises DataError with the number of NaN and infinite values in x."""
  bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
  if bad:
    nan = int(np.count_nonzero(np.isnan(x)))
    raise DataError(f'{where} contains {nan} NaN and {bad - nan} infinite values (of {x.size}); '
                    'remove or impute them before loading.')


def _check_sized(x: np.ndarray, where: str) -> None:
  """Raises DataError if one example has no values (a dimension after the first is 0)."""
  if 0 in x.shape[1:]:
    raise DataError(f'{where}: examples of shape {x.shape[1:]} hold no values (array of shape {x.shape}); '
                    'each example needs at least one value (a csv, a feature column besides label / y).')


def _images(x: np.ndarray, where: str) -> np.ndarray:
  """N x H x W [x C] uint8 (0..255), bool or float in [0, 1] -> N x H x W x C: uint8 stays uint8 (bool
  becomes {0, 255}), floats become float32 after a range check."""
  _check_nonempty(x, where)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise DataError(f'{where}: images must be N x H x W or N x H x W x C, got shape {x.shape}.')
  _check_sized(x, where)
  if x.dtype == np.uint8:
    return x
  if x.dtype == bool:
    return x.astype(np.uint8) * np.uint8(255)
  if x.dtype != bool and not np.issubdtype(x.dtype, np.floating):
    raise DataError(f'{where}: images of dtype {x.dtype}; store uint8 (0..255) or floats in [0, 1].')
  _check_finite(x, where)
  if x.min() < 0 or x.max() > 1:
    raise DataError(f'{where}: float images must lie in [0, 1], found [{x.min():g}, {x.max():g}]; '
                    'rescale them (e.g. x / 255) or store uint8.')
  return x.astype(np.float32)


def _features(x: np.ndarray, where: str) -> np.ndarray:
  """Real N x D table -> float32 N x D; raises DataError if empty, not 2-D, complex or not finite."""
  if x.ndim != 2 or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
                         or x.dtype == bool):
    kind = ' (complex values: store the real and imaginary parts as separate features)' if (
        np.issubdtype(x.dtype, np.complexfloating)) else ''
    raise DataError(f'{where}: tabular data must be a real-valued N x D array, got {x.dtype} {x.shape}{kind}.')
  _check_nonempty(x, where)
  _check_sized(x, where)
  _check_finite(x, where)
  with np.errstate(over='ignore'):
    x32 = x.astype(np.float32)
  if not np.isfinite(x32).all():
    raise DataError(f'{where}: values beyond the float32 range (|x| > 3.4e38); rescale them.')
  return x32


def holdout_indices(n: int, fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
  """The seeded split of ``n`` examples: train and test indices, the first ``n - round(n * fraction)`` of a
  permutation keyed by ``seed`` and the rest. Raises DataError (naming ``where``) if either part is empty."""
  n_test = round(n * fraction)
  if not 0 < n_test < n:
    raise DataError(f'{where}: test_fraction={fraction} of {n} examples leaves {n_test} test '
                    f'and {n - n_test} train examples; change data.test_fraction or give more data.')
  perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
  return perm[:n - n_test], perm[n - n_test:]


def _holdout(split: _Split, fraction: float, seed: int) -> tuple[_Split, _Split]:
  """Seeded split (:func:`holdout_indices`) of one split into train and test parts."""
  train_idx, test_idx = holdout_indices(len(split.x), fraction, seed, split.where)
  take = lambda idx, part: split._replace(
      x=split.x[idx], y=None if split.y is None else split.y[idx], where=f'{split.where} ({part})')
  return take(train_idx, 'train part'), take(test_idx, 'test part')


def _head(split: _Split, count: int | None) -> _Split:
  """The first count examples of split (all of them if count is None or 0)."""
  count = count or None
  return split._replace(x=split.x[:count], y=None if split.y is None else split.y[:count])


def _check_pair(train: _Split, test: _Split) -> None:
  """Raises DataError if test examples differ in shape from train, or only one split has labels."""
  if train.x.shape[1:] != test.x.shape[1:]:
    raise DataError(f'{test.where}: examples of shape {test.x.shape[1:]} but {train.where} has '
                    f'{train.x.shape[1:]}; the test data must have the same features / image size.')
  if (train.y is None) != (test.y is None):
    with_y = train.where if test.y is None else test.where
    raise DataError(f'only {with_y} has labels; give labels for both splits or for neither.')


def _same_storage(train: _Split, test: _Split) -> tuple[_Split, _Split]:
  """Both splits as float32 when one is uint8 and the other float (or their x_max differ)."""
  if (train.x.dtype, train.x_max) == (test.x.dtype, test.x_max):
    return train, test
  as_float = lambda s: s._replace(x=to_float32(s.x, s.x_max).astype(np.float32))
  return as_float(train), as_float(test)


def _transform(train: _Split, test: _Split, kind: str, opts: _Options) -> tuple[np.ndarray, np.ndarray]:
  """Flattens to [N, D] and binarizes (images: uint8 {0, x_max}) or standardizes (tabular) both splits."""
  x_train, x_test = train.x.reshape(len(train.x), -1), test.x.reshape(len(test.x), -1)
  if kind == 'tabular' and opts.binarize != 'none':
    raise DataError(f'data.binarize={opts.binarize!r} applies to images only; {opts.name!r} is '
                    "tabular: set data.binarize='none'.")
  x_max = train.x_max
  to_stored = lambda on_off: on_off.astype(np.uint8) * np.uint8(x_max)
  if opts.binarize == 'static':
    return tuple(to_stored(to_float32(x, x_max) > opts.binarize_threshold) for x in (x_train, x_test))
  if opts.binarize == 'dynamic':  # Test binarized once, with a fixed key: comparable across runs.
    return x_train, to_stored(np.asarray(dynamic_binarize(jax.random.key(0), to_float32(x_test, x_max))))
  if kind == 'tabular' and opts.standardize:
    mean, std = x_train.mean(0, dtype=np.float64), x_train.std(0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (x_train, x_test))
  return x_train, x_test


# ---- sources: each returns (train, test or None for a seeded split, kind) ----

_Loaded = tuple[_Split, _Split | None, str]


def _load_digits(opts: _Options) -> _Loaded:
  """scikit-learn's 8x8 digits, values 0..16 (stored as uint8, x_max 16); 1,797 examples, labels 0..9."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  where = 'sklearn digits'
  images = _split(_images(digits.images.astype(np.uint8), where), digits.target, where)
  return images._replace(x_max=16), None, 'image'


def _load_idx(opts: _Options) -> _Loaded:
  """A directory of IDX files: train-* and t10k-* as the two splits, or one images file to split."""
  expected = 'a directory of MNIST-format IDX files, e.g. t10k-images-idx3-ubyte.gz (+ labels-idx1)'
  directory = _required_path(opts, expected)
  if not directory.is_dir():
    raise DataError(f'data.path={directory} is not a directory; expected {expected}.')
  found = sorted(p for p in directory.iterdir() if _IDX_IMAGES.search(p.name))
  images = list({p.name.removesuffix('.gz'): p for p in found}.values())  # x.gz or x: one of them.
  roles = {_idx_role(p.name): p for p in images}
  if 'train' in roles and 'test' in roles:
    return _idx_split(roles['train']), _idx_split(roles['test']), 'image'
  if len(images) == 1:
    return _idx_split(images[0]), None, 'image'
  if not images:
    raise DataNotFoundError(f'no *images-idx3-ubyte[.gz] file in {directory}; expected {expected}.')
  raise DataError(f'{directory} holds several IDX image files {[p.name for p in images]} without a '
                  'train-*/t10k-* pair; keep one dataset per directory.')


def _idx_role(name: str) -> str | None:
  """'train' / 'test' from an IDX file name's prefix (train-, t10k-, test-), else None."""
  prefix = name[:name.index('images')]
  return 'train' if 'train' in prefix else 'test' if 't10k' in prefix or 'test' in prefix else None


def _idx_split(images_path: pathlib.Path) -> _Split:
  """Reads an images file and, if present beside it, its labels file (same name, labels-idx1)."""
  where = f'IDX file {images_path}'
  base = re.sub(r'images([-.])idx3', r'labels\1idx1', images_path.name.removesuffix('.gz'))
  labels = [p for p in (images_path.with_name(base), images_path.with_name(base + '.gz')) if p.exists()]
  y = _read_idx(labels[0], _IDX_LABELS_MAGIC) if labels else None
  return _split(_images(_read_idx(images_path, _IDX_IMAGES_MAGIC), where), y, where)


def _read_idx(path: pathlib.Path, magic: int) -> np.ndarray:
  """Parses a uint8 IDX file (big-endian header: magic, then one uint32 per dim) with numpy."""
  with _reading(f'IDX file {path}', 'an MNIST-format IDX file, gzip-compressed if named .gz'):
    with (gzip.open if path.name.endswith('.gz') else open)(_file(path, 'an IDX file'), 'rb') as f:
      data = f.read()
  ndim = magic - 0x0800
  found = int.from_bytes(data[:4], 'big')
  if len(data) < 4 + 4 * ndim or found != magic:
    raise DataError(f'{path}: IDX magic number {found}, expected {magic} (uint8, {ndim} dims); '
                    'is it an MNIST-format file, and images/labels named right?')
  dims = tuple(int(d) for d in np.frombuffer(data, '>u4', ndim, 4))
  values = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if values.size != math.prod(dims):
    raise DataError(f'{path}: header says {dims} but the file holds {values.size} values; '
                    'the file is truncated or corrupt, download it again.')
  return values.reshape(dims)


_NPZ_EXPECTED = "an .npz file with array 'x' (N x D, or N x H x W [x C]) and optional 'y' (N labels)"


def _load_npz(opts: _Options) -> _Loaded:
  """npz with x (N x D tabular, N x H x W [x C] images) and optional y; data.test_path likewise."""
  train = _npz_split(_required_path(opts, _NPZ_EXPECTED), 'train')
  test = _npz_split(_existing(opts.test_path, _NPZ_EXPECTED), 'test') if opts.test_path else None
  return train, test, 'image' if train.x.ndim > 2 else 'tabular'


def _npz_split(path: pathlib.Path, role: str) -> _Split:
  """Reads x and optional y from one npz; raises DataError if it is no npz or has no x."""
  where = f'npz {role} file {path}'
  with _reading(where, _NPZ_EXPECTED):
    with open(_file(path, _NPZ_EXPECTED), 'rb') as f:
      start = f.read(len(_ZIP_MAGIC))
    if start != _ZIP_MAGIC:  # np.load would try pickle (refused) or read a single .npy array
      found = 'is empty (0 bytes)' if not start else f'starts with {start!r}, not {_ZIP_MAGIC!r}'
      raise DataError(f'{where} {found}: it is not an .npz archive; save it as '
                      'np.savez(path, x=features, y=labels).')
    with np.load(path, allow_pickle=False) as arrays:
      if 'x' not in arrays.files:
        raise DataError(f"{where} has no array 'x' (it has: {arrays.files}); save the examples as "
                        'x, e.g. np.savez(path, x=features, y=labels).')
      x, y = _npz_array(arrays, 'x', where), _npz_array(arrays, 'y', where) if 'y' in arrays.files else None
  return _split(_images(x, where) if x.ndim > 2 else _features(x, where), y, where)


_ZIP_MAGIC = b'PK\x03\x04'  # An .npz is a zip archive of .npy files.


def _npz_array(arrays: Any, name: str, where: str) -> np.ndarray:
  """arrays[name]; raises DataError for an array of Python objects (numpy refuses them unpickled)."""
  try:
    return arrays[name]
  except ValueError as e:
    if 'allow_pickle' not in str(e):
      raise
    raise DataError(f"{where}: array {name!r} holds Python objects (dtype object), which aelab does not "
                    'unpickle; store numbers, e.g. np.savez(path, x=x.astype(np.float32)).') from None


def _load_csv(opts: _Options) -> _Loaded:
  """Numeric CSV (comma-separated); data.test_path likewise, with the same feature columns."""
  expected = 'a numeric .csv file, optional header row, optional label column named label or y'
  train = _csv_split(_required_path(opts, expected), 'train')
  test = _csv_split(_existing(opts.test_path, expected), 'test') if opts.test_path else None
  return train, test, 'tabular'


def _csv_split(path: pathlib.Path, role: str) -> _Split:
  """Reads one CSV; a first row that is not all numbers is a header naming the columns."""
  where = f'csv {role} file {path}'
  expected = 'a numeric comma-separated text file'
  with _reading(where, expected):
    header = _csv_header(_file(path, expected))
  with warnings.catch_warnings():  # loadtxt warns on an empty file; _features raises instead.
    warnings.simplefilter('ignore', UserWarning)
    try:
      table = np.loadtxt(path, delimiter=',', skiprows=int(header is not None), ndmin=2, quotechar='"')
    except UnicodeError as e:
      raise DataError(f'{where} is not text ({e}); expected {expected}.') from e
    except ValueError as e:
      raise DataError(f'{where}: {e} Every value must be a number (comma-separated).') from e
  _check_nonempty(table if table.size else table[:0], where)  # a header alone: no rows to index
  if header is not None and len(header) != table.shape[1]:
    raise DataError(f'{where}: the header names {len(header)} columns, the rows have {table.shape[1]}.')
  label = next((i for i, n in enumerate(header or []) if n.lower() in ('label', 'y')), None)
  if label is None:
    return _split(_features(table, where), None, where)
  return _split(_features(np.delete(table, label, axis=1), where), table[:, label], where)


def _csv_header(path: pathlib.Path) -> list[str] | None:
  """The column names if the first row is not all numeric, else None."""
  with open(path) as f:
    names = [s.strip().strip('"\'') for s in f.readline().split(',')]
  try:
    [float(n) for n in names]  # pylint: disable=expression-not-assigned
  except ValueError:
    return names
  return None


def _load_tfds(opts: _Options) -> _Loaded:
  """A tfds image dataset: its 'train' and 'test' splits, or 'train' alone (then seeded split)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  # Heavy; only here.
  train = _tfds_source(tfds, opts, 'train')
  features = train.dataset_info.features
  if 'image' not in features.keys() or None in features['image'].shape:
    raise DataError(f'tfds dataset {opts.name!r} has no fixed-size "image" feature ({features}); '
                    'aelab reads fixed-size image datasets from tfds; use npz / csv for others.')
  has_test = 'test' in train.dataset_info.splits
  test = _tfds_split(_tfds_source(tfds, opts, 'test'), opts.name, 'test') if has_test else None
  return _tfds_split(train, opts.name, 'train'), test, 'image'


def _tfds_source(tfds: Any, opts: _Options, split: str) -> Any:
  """tfds.data_source for one split, downloading and preparing it if needed.

  Raises:
    DataError: the name is not a tfds dataset.
    DatasetUnavailableError: the download failed (no network?), with offline alternatives.
  """
  import requests  # pylint: disable=g-import-not-at-top  # tfds downloads with requests.
  download_errors = (requests.exceptions.RequestException, ConnectionError, TimeoutError,
                     urllib.error.URLError, tfds.download.DownloadError)
  try:
    with _few_download_retries():
      return tfds.data_source(opts.name, split=split, data_dir=opts.tfds_data_dir or None,
                              download=True)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f'data.name={opts.name!r} is neither one of {_LOCAL_SOURCES} nor a known '
                    'tensorflow-datasets dataset (see tfds.list_builders()); check the spelling.'
                    ) from None
  except download_errors as e:
    raise DatasetUnavailableError(_unavailable_message(opts)) from e


def _unavailable_message(opts: _Options) -> str:
  """What failed and the offline alternatives, as command-line flags."""
  data_dir = opts.tfds_data_dir or 'the tfds default, ~/tensorflow_datasets'
  return (f'tensorflow-datasets could not download {opts.name!r} (no network?). Offline, use '
          '--config.data.name=digits (bundled with scikit-learn); '
          '--config.data.name=idx --config.data.path=DIR (a directory of MNIST IDX files, e.g. '
          't10k-images-idx3-ubyte.gz); --config.data.name=npz or csv with --config.data.path=FILE; '
          f'or prepare {opts.name!r} with tfds on a machine with network and copy it into '
          f'--config.data.tfds_data_dir (now: {data_dir}).')


@contextlib.contextmanager
def _few_download_retries() -> Iterator[None]:
  """Lowers tfds's download retries (10, about 200 s of backoff offline) for the duration."""
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  retries = getattr(downloader, 'MAX_RETRIES', _TFDS_DOWNLOAD_RETRIES)
  downloader.MAX_RETRIES = min(retries, _TFDS_DOWNLOAD_RETRIES)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = retries


def _tfds_split(source: Any, name: str, split: str) -> _Split:
  """Reads all records ({'image': H x W x C uint8, 'label'}) of a data source into arrays."""
  where = f'tfds {name!r} split {split!r}'
  n = len(source)
  if n == 0:
    raise DataError(f'{where} has 0 examples; delete its folder in data.tfds_data_dir to re-prepare.')
  first = source[0]
  x = np.empty((n, *first['image'].shape), np.uint8)
  y = np.empty(n, np.int64) if 'label' in first else None
  for start in range(0, n, _TFDS_READ_CHUNK):
    for i, record in enumerate(_tfds_records(source, start, min(start + _TFDS_READ_CHUNK, n)), start):
      x[i] = record['image']
      if y is not None:
        y[i] = record['label']
  return _split(_images(x, where), y, where)


def _tfds_records(source: Any, start: int, stop: int) -> list[dict[str, Any]]:
  """Records ``start:stop`` of a data source: batched reads where supported, else one at a time
  (tfds's mock data sources lack a working ``__getitems__``)."""
  try:
    return list(source.__getitems__(list(range(start, stop))))
  except (AttributeError, TypeError):
    return [source[i] for i in range(start, stop)]


def _load_images(opts: _Options) -> _Loaded:
  """A folder of PNG / JPEG images (``aelab.data.images``): uint8, labels from class subfolders if any."""
  directory = _required_path(opts, 'a folder of PNG / JPEG images, one subfolder per class for labels')
  source = images.ImageFolder(directory, opts.image_size, opts.channels)
  x, y = images.load_folder(source)
  return _split(x, y, f'image folder {directory}'), None, 'image'


def _load_superposition(data_config: ml_collections.ConfigDict) -> Dataset:
  """Sparse features in superposition (``aelab/superposition.py``, fields ``data.superposition``), not
  standardized (that would skew the feature directions); ``extras['feature_directions']``: ``n x D``."""
  try:
    s = superposition.spec(data_config.get('superposition'))
  except superposition.SuperpositionError as e:
    raise DataError(str(e)) from None
  x_train, x_test, directions = superposition.generate(s)
  return Dataset(x_train, None, x_test, None, (s.dim,), 'tabular', 'superposition',
                 {'feature_directions': directions})


def _load_shapes2d(opts: _Options) -> _Loaded:
  """Every image of the shapes2d grid; the label is the image's flat index into the grid (turned
  into the factors by `_with_factors` after the split)."""
  try:
    grid = shapes2d.Shapes2D(tuple(opts.shapes2d_counts), opts.shapes2d_size)
  except ValueError as e:
    raise DataError(f'data.shapes2d_counts / data.shapes2d_size: {e}') from None
  x = _images(grid.draw(grid.all_factors()), 'shapes2d')
  return _Split(x, np.arange(grid.num_images, dtype=np.int32), 'shapes2d'), None, 'image'


def _with_factors(ds: Dataset, opts: _Options) -> Dataset:
  """`ds` with the factors of each example in `extras` and the shape factor as its label."""
  counts = tuple(opts.shapes2d_counts)
  f_train, f_test = (np.stack(np.unravel_index(y, counts), -1).astype(np.int32) for y in (ds.y_train, ds.y_test))
  extras = {'factors_train': f_train, 'factors_test': f_test, 'factor_counts': counts}
  return dataclasses.replace(ds, y_train=f_train[:, 0], y_test=f_test[:, 0], extras=extras)


_LOADERS: dict[str, Callable[[_Options], _Loaded]] = {
    'digits': _load_digits, 'idx': _load_idx, 'npz': _load_npz, 'csv': _load_csv, 'shapes2d': _load_shapes2d,
    'images': _load_images}
