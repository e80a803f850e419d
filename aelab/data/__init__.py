"""Datasets as host arrays, ready to be put on the device once.

`load(config.data)` returns a `Dataset`: flattened train and test examples (uint8 images, float32
tables: see `Dataset`), optional int32 labels, the shape of one example and its kind ('image' or
'tabular'). `data.name` names the source, one module of `aelab.data.sources` (digits, idx, npz, csv,
images, shapes2d, superposition, and the disentanglement benchmarks dsprites, shapes3d, mpi3d, cars3d; any
other plain name is a tensorflow-datasets name read by
`aelab.data.sources.tfds`) or the dotted path of a user's module with the same contract
(`data.name=my_lab.my_source`). A source reads its data through one reader (`aelab.data.arrays`), which
`aelab.data.stream` uses too.

Images stay uint8 (4x less memory than float32; `Dataset.to_float32` scales a batch to [0, 1], inside
the compiled epoch) and are optionally binarized; tabular features are standardized with the
train statistics. A source with a single split is split with
`jax.random.permutation(jax.random.key(data.split_seed), n)`: the first n - round(n * test_fraction)
permuted examples train, the rest test.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.data import arrays, fingerprints, sources
from aelab.data.arrays import DataNotFoundError, DatasetUnavailableError  # noqa: F401  (data.*, as before)
from aelab.errors import ConfigError, DataError  # data.DataError, as before
from aelab.nn import compiler

_BINARIZE = ('none', 'static', 'dynamic')


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
      ``feature_directions`` (n x D); for 'shapes2d' and the disentanglement benchmarks (dsprites,
      shapes3d, mpi3d, cars3d, tfds' ``label_*`` datasets) ``factors_train`` (int32 [N, K]), ``factors_test``
      (int32 [M, K]), ``factor_counts`` (int [K]), ``factor_names`` and, for a benchmark file holding every
      combination of the factor values it holds, ``factor_sampler`` (``aelab.data.factors.FactorRows``).
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


class Labeled(NamedTuple):
  """Examples with their class labels: what a conditional family (``Family.num_classes > 0``, e.g. ``cvae``)
  takes wherever the others take examples ``x_NxD``. ``x``: N x D as stored (uint8 images) or float32;
  ``y``: int32 [N] class ids. A pytree: jitted functions, ``jax.device_put`` and ``jax.tree.map`` (the rows of
  a batch, padding) treat both parts alike; :func:`to_float32` and :func:`dynamic_binarize` change ``x`` only."""
  x: Any
  y: Any


def num_examples(x: Any) -> int:
  """The number of examples (rows) of ``x_NxD`` or of a :class:`Labeled` pair."""
  return jax.tree.leaves(x)[0].shape[0]


def take(x: Any, rows: Any) -> Any:
  """``x[rows]`` of ``x_NxD`` or of both parts of a :class:`Labeled` pair (jittable)."""
  return jax.tree.map(lambda a: a[rows], x)


def inputs(dataset: Dataset, split: str, num_classes: int = 0) -> Any:
  """``dataset.train`` or ``dataset.test`` (``split``) as a family takes it: as stored, or for a conditional
  family (``num_classes > 0``) as :class:`Labeled` with its labels. Raises DataError (:func:`check_labels`)."""
  x, y = (dataset.train, dataset.y_train) if split == 'train' else (dataset.test, dataset.y_test)
  if not num_classes:
    return x
  check_labels(dataset, num_classes, f'a conditional model of {num_classes} classes')
  return Labeled(x, y)


def check_labels(dataset: Dataset, num_classes: int, who: str) -> None:
  """Raises DataError (one line) unless both splits of ``dataset`` have labels in ``[0, num_classes)``;
  ``who`` names what needs them and the field of ``num_classes`` (``'model.name=cvae (cvae.num_classes=10)'``)."""
  if dataset.y_train is None or dataset.y_test is None:
    streamed = not isinstance(dataset.train, np.ndarray) and dataset.y_test is not None
    why = ('streamed training examples are read without labels: set data.stream=False' if streamed else
           'use a labelled source (digits, idx with labels, npz with y, csv with a label column, mnist)')
    raise DataError(f'{who} conditions on class labels, but data.name={dataset.name!r} has none: {why}.')
  for y in (dataset.y_train, dataset.y_test):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise DataError(f'{who} takes labels 0..{num_classes - 1}, but the labels of data.name={dataset.name!r} '
                      f'range over {int(y.min())}..{int(y.max())}: set its number of classes to '
                      f'{int(y.max()) + 1} (labels must be class ids from 0).')


def to_float32(x: Any, x_max: float) -> Any:
  """uint8 examples (numpy or jax) -> float32 x * (1 / x_max) (e.g. 0..255 -> [0, 1]); float arrays as they
  are. A multiplication by the float32 reciprocal, which is what XLA makes of a division by a constant,
  so host and device give the same numbers (within 1 ulp of x / x_max; exact for x_max = 1, 16). A
  :class:`Labeled` pair keeps its labels."""
  if isinstance(x, Labeled):
    return x._replace(x=to_float32(x.x, x_max))
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
  """The fields of config.data that every source shares and load reads, with their defaults (for fields absent
  or None). A source's own fields are in its section, ``config.data.<section>`` (``aelab.data.sources``)."""
  name: str = 'digits'
  path: str | None = None  # None or '': absent, here and for test_path.
  test_path: str | None = None
  test_fraction: float = 0.2
  split_seed: int = 0
  binarize: str = 'none'
  binarize_threshold: float = 0.5
  standardize: bool = True
  max_train_examples: int | None = None  # None or 0: all.
  max_test_examples: int | None = None


def load(data_config: ml_collections.ConfigDict) -> Dataset:
  """Loads, splits and transforms the dataset that `config.data` names.

  Fields read (defaults in brackets): name ['digits'], path, test_path, test_fraction [0.2],
  split_seed [0], binarize ['none'], binarize_threshold [0.5], standardize [True],
  max_train_examples, max_test_examples [None or 0: all], and the source's section (`aelab.data.sources`).

  Raises:
    DataError: invalid config field, unknown name, or bad data (NaN/inf, empty, no features,
      complex or object values, mismatched shapes or labels, float images outside [0, 1], a file that
      is unreadable, truncated or not of its format, a directory where a file belongs).
    DataNotFoundError: data.path or data.test_path does not exist (a DataError and a FileNotFoundError).
    DatasetUnavailableError: a tfds dataset could not be downloaded (e.g. no network).
  """
  opts = _options(data_config)
  read = source(data_config).read(data_config)
  train = _in_memory(read.train)
  if read.test is None:
    train, test = _holdout(train, read.test_fraction or opts.test_fraction, opts.split_seed)
  else:
    test = _in_memory(read.test)
  _check_pair(train, test)
  train, test = _head(train, opts.max_train_examples), _head(test, opts.max_test_examples)
  train, test = _same_storage(train, test)
  x_train, x_test = _transform(train, test, read.kind, dataclasses.replace(
      opts, standardize=opts.standardize and read.standardize))
  ds = Dataset(x_train, train.y, x_test, test.y, train.x.shape[1:], read.kind, opts.name, dict(read.extras),
               x_max=train.x_max)
  return read.finish(ds) if read.finish else ds


def source(data_config: ml_collections.ConfigDict) -> Any:
  """The source module of ``data.name`` (``aelab.data.sources.module``), its fields validated. Raises
  DataError for an unknown module or a bad field of its section."""
  try:
    module = sources.module(data_config.get('name') or 'digits')
    module.validate(data_config)
  except ConfigError as e:
    raise DataError(str(e)) from None
  return module


def fingerprint(data_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fingerprint of the data ``data_config`` reads, stored with a run: the source's own
  ``fingerprint(data_config)`` if it defines one, else for a source with a ``PATH`` that of ``data.path`` /
  ``data.test_path`` (``fingerprints.of_paths``), else ``{}`` (generated or bundled data: the config says
  it all)."""
  found = sources.module(data_config.get('name') or 'digits')
  own = getattr(found, 'fingerprint', None)
  if own is not None:
    return own(data_config)
  return fingerprints.of_paths(data_config) if found.PATH is not None else {}


PATH_FIELDS = ('path', 'test_path')


def resolve_paths(data_config: ml_collections.ConfigDict) -> None:
  """Makes ``data.path`` / ``data.test_path`` absolute (``~`` expanded) in place, for a source with a
  ``PATH``: a run's config.json then names the data it read, whatever the current directory."""
  if sources.module(data_config.get('name') or 'digits').PATH is None:
    return
  for field in PATH_FIELDS:
    value = data_config.get(field)
    if isinstance(value, str) and value:
      data_config[field] = os.path.abspath(os.path.expanduser(value))


def _in_memory(split: arrays.Split) -> _Split:
  """Every example and label of a split, read through its reader (which checks them)."""
  x, y = split.reader.read(None)
  return _Split(x, y, split.where, split.x_max)


def test_images(x: np.ndarray, data_config: ml_collections.ConfigDict, where: str) -> np.ndarray:
  """Test images N x H x W [x C] (uint8 0..255, or floats in [0, 1]) as `load` stores them: N x D, uint8
  images staying uint8 (``to_float32`` makes each batch float32 on the device), binarized per
  `data.binarize` (once, with a fixed key, for 'dynamic'). For sources that read the test split
  themselves (aelab/stream.py). Raises DataError as `load` does."""
  split = _Split(arrays.images(np.asarray(x), where), None, where)
  return _transform(split, split, 'image', _options(data_config))[1]


_ROWS_AT_ONCE = 8192  # rows converted to float32 at a time on the host


def _binarize_static(x: np.ndarray, x_max: int, threshold: float) -> np.ndarray:
  """``{0, x_max}`` (uint8) where ``to_float32(x) > threshold``, a block of rows at a time: no float32
  copy of the whole split (floats in [0, 1] give uint8 {0, 255})."""
  out = np.empty(x.shape, np.uint8)
  for start in range(0, len(x), _ROWS_AT_ONCE):
    block = to_float32(x[start:start + _ROWS_AT_ONCE], x_max) > threshold
    out[start:start + _ROWS_AT_ONCE] = block.astype(np.uint8) * np.uint8(x_max if x.dtype == np.uint8 else 255)
  return out


def _binarize_once(key: jax.Array, x_NxD: np.ndarray, x_max: int) -> np.ndarray:
  """:func:`dynamic_binarize` of the stored examples, stored again as uint8 ``{0, x_max}`` (floats in [0, 1]:
  ``{0, 255}``), :data:`_ROWS_AT_ONCE` rows at a time: block ``b`` with ``fold_in(key, b)``, the first
  with ``key`` itself (so a split of at most that many rows is binarized exactly as in one call; JAX's
  partitionable threefry draws the first rows of a larger shape the same). The float32 values and random
  numbers of a whole split are never held."""
  out = np.empty(x_NxD.shape, np.uint8)
  for b, start in enumerate(range(0, len(x_NxD), _ROWS_AT_ONCE)):
    block_key = key if b == 0 else jax.random.fold_in(key, b)
    out[start:start + _ROWS_AT_ONCE] = _binarize_block(block_key, x_NxD[start:start + _ROWS_AT_ONCE], x_max)
  return out


@functools.partial(jax.jit, static_argnums=2)
def _binarize_block(key: jax.Array, x_BxD: jax.Array, x_max: int) -> jax.Array:
  on_off = dynamic_binarize(key, to_float32(x_BxD, x_max))
  return on_off.astype(jnp.uint8) * jnp.uint8(x_max if x_BxD.dtype == jnp.uint8 else 255)


def dynamic_binarize(key: jax.Array, x: jax.Array) -> jax.Array:
  """Samples Bernoulli(x) elementwise: float32 {0, 1}, same shape as x (values in [0, 1]); a :class:`Labeled`
  pair keeps its labels. Jittable."""
  if isinstance(x, Labeled):
    return x._replace(x=dynamic_binarize(key, x.x))
  return jax.random.bernoulli(key, x).astype(jnp.float32)


# ---- config ----

def _options(config: ml_collections.ConfigDict) -> _Options:
  """Reads config.data with defaults; raises DataError naming the bad field and its allowed values."""
  given = {f.name: config.get(f.name) for f in dataclasses.fields(_Options)}
  opts = _Options(**{k: v for k, v in given.items() if v is not None})
  if not isinstance(opts.name, str) or not opts.name:
    raise DataError(f'data.name={opts.name!r}: give one of {sources.available()}, a tfds dataset name or the '
                    'dotted path of a source module.')
  for field in ('path', 'test_path'):
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


# ---- the split and the transforms ----


def holdout_indices(n: int, fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
  """The seeded split of ``n`` examples: train and test indices, the first ``n - round(n * fraction)`` of a
  permutation keyed by ``seed`` and the rest. Raises DataError (naming ``where``) if either part is empty."""
  n_test = round(n * fraction)
  if not 0 < n_test < n:
    raise DataError(f'{where}: test_fraction={fraction} of {n} examples leaves {n_test} test '
                    f'and {n - n_test} train examples; change data.test_fraction or give more data.')
  perm = seeded_permutation(seed, n)
  return perm[:n - n_test], perm[n - n_test:]


@functools.lru_cache(maxsize=None)
def _permutation_program(n: int) -> Any:
  return jax.jit(lambda seed: jax.random.permutation(jax.random.key(seed), n),
                 compiler_options=compiler.on_cpu(compiler.INTEGER))


def seeded_permutation(seed: int, n: int) -> np.ndarray:
  """``jax.random.permutation(jax.random.key(seed), n)`` as numpy, compiled as one program (a cold start
  compiled its four parts one by one, 0.3 s of it) at ``aelab.nn.compiler.INTEGER``; a seed outside the
  int32 range takes the eager path."""
  if -2**31 <= seed < 2**31:
    return np.asarray(_permutation_program(n)(np.int32(seed)))
  return np.asarray(jax.random.permutation(jax.random.key(seed), n))


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
  if opts.binarize == 'static':
    return tuple(_binarize_static(x, x_max, opts.binarize_threshold) for x in (x_train, x_test))
  if opts.binarize == 'dynamic':  # Test binarized once, with a fixed key: comparable across runs.
    return x_train, _binarize_once(jax.random.key(0), x_test, x_max)
  if kind == 'tabular' and opts.standardize:
    mean, std = x_train.mean(0, dtype=np.float64), x_train.std(0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (x_train, x_test))
  return x_train, x_test
