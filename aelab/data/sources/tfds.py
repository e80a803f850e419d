"""Any other plain ``data.name``: a tensorflow-datasets image dataset (``mnist``, ``fashion_mnist``,
``cifar10``, ...) read through ``tfds.data_source`` (ArrayRecord files, no TensorFlow needed; tfds is
imported only when such a name is read), downloaded and prepared into ``data.tfds.data_dir`` if needed.
Its ``train`` and ``test`` splits, or ``train`` alone (then held out by ``data.test_fraction``).

``data.name=tfds`` with ``data.tfds.name=NAME`` reads tfds's ``NAME`` where a built-in source has that name
(``data.tfds.name=dsprites``, ``shapes3d``: tfds's copies of DeepMind's files). A dataset with ``label_*``
class features (``smallnorb``: category, elevation, azimuth, lighting; ``dsprites``; ``shapes3d``) has them
as its ground-truth factors, in ``Dataset.extras`` as ``aelab.data.factors`` describes (and a factor sampler
over the train split when it holds every combination of the factor values it holds: all of a published
dataset, a covering subset of them in a mock); the label of an example is its first factor."""
from __future__ import annotations

import contextlib
import dataclasses
import urllib.error
from collections.abc import Iterator
from typing import Any

import numpy as np

from aelab.data import arrays, factors
from aelab.errors import ConfigError, DataError

SECTION = 'tfds'
CONFIG: dict[str, tuple[Any, str]] = {
    'data_dir': (None, 'where tensorflow-datasets keeps prepared datasets; None: its default, ~/tensorflow_datasets'),
    'name': (None, "the tfds dataset of data.name='tfds' (e.g. 'dsprites', whose plain name is the npz source); "
             'None: data.name'),
}
PATH = None
# tfds retries a failed download 10 times with exponential backoff: about 200 s before an offline
# machine gives up. Three tries fail in about a second and still ride out a transient error.
DOWNLOAD_RETRIES = 3
READ_CHUNK = 1024  # records per batched read of a tfds data source


def validate(data_config: Any) -> None:
  """Raises ConfigError unless data.tfds.data_dir is a path (a string) or None."""
  fields = arrays.section(data_config, SECTION, CONFIG)
  if not isinstance(fields['data_dir'], (str, type(None))):
    raise ConfigError(f'data.tfds.data_dir={fields["data_dir"]!r} must be a path (a string).')
  if not isinstance(fields['name'], (str, type(None))):
    raise ConfigError(f'data.tfds.name={fields["name"]!r} must be a tfds dataset name (a string).')
  if data_config.get('name') == 'tfds' and not fields['name']:
    raise ConfigError("data.name='tfds' needs data.tfds.name, the tensorflow-datasets name (e.g. 'dsprites').")


def adapt(config: Any) -> Any:
  """The config unchanged."""
  return config


def read(data_config: Any) -> arrays.Read:
  """The dataset's splits as readers of uint8 H x W x C images with int32 labels.

  Raises:
    DataError: the name is not a tfds dataset, or it has no fixed-size ``image`` feature, or no examples.
    DatasetUnavailableError: the download failed (no network?), with offline alternatives.
  """
  import tensorflow_datasets as tfds  # noqa: PLC0415  (heavy; only here)
  name, data_dir = name_of(data_config), data_dir_of(data_config)
  train = _source(tfds, name, data_dir, 'train')
  features = train.dataset_info.features
  if 'image' not in features.keys() or None in features['image'].shape:
    raise DataError(f'tfds dataset {name!r} has no fixed-size "image" feature ({features}); '
                    'aelab reads fixed-size image datasets from tfds; use npz / csv for others.')
  class_label = tfds.features.ClassLabel
  keys = tuple(k for k in features.keys() if k.startswith('label_') and isinstance(features[k], class_label))
  counts = tuple(int(features[k].num_classes) for k in keys)
  has_test = 'test' in train.dataset_info.splits
  test = Records(_source(tfds, name, data_dir, 'test'), name, 'test', keys, counts) if has_test else None
  train = Records(train, name, 'train', keys, counts)
  names = tuple(k[len('label_'):] for k in keys)
  extras = {'factor_counts': counts, 'factor_names': names} if keys else {}
  return arrays.Read(arrays.Split(train, train.where), None if test is None else arrays.Split(test, test.where),
                     'image', extras=extras, finish=_with_factors(train, counts, names) if keys else None)


def name_of(data_config: Any) -> str:
  """The tfds dataset's name: ``data.tfds.name`` when set, else ``data.name``."""
  return arrays.section(data_config, SECTION, CONFIG)['name'] or data_config.name


def _with_factors(train: Records, counts: tuple[int, ...], names: tuple[str, ...]) -> Any:
  """``Read.finish``: the factors in ``extras`` (:func:`aelab.data.factors.finish`) and, where the train split
  holds every combination of the values it holds, its :class:`aelab.data.factors.FactorRows` sampler."""
  def done(ds: Any) -> Any:
    ds = factors.finish(train.flat_all, counts, 0)(ds)
    return dataclasses.replace(ds, extras={**ds.extras, **factors.extras(train, train.flat_all(), counts, names)})
  return done


def data_dir_of(data_config: Any) -> str | None:
  """``data.tfds.data_dir``, None when unset or empty."""
  return arrays.section(data_config, SECTION, CONFIG)['data_dir'] or None


class Records(arrays.Reader):
  """A tfds data source's records ({'image': H x W x C uint8, 'label'}) as a reader, read in batches."""

  def __init__(self, source: Any, name: str, split: str, factor_keys: tuple[str, ...] = (),
               counts: tuple[int, ...] = ()):
    self.source, self.where = source, f'tfds {name!r} split {split!r}'
    if len(source) == 0:
      raise DataError(f'{self.where} has 0 examples; delete its folder in data.tfds.data_dir to re-prepare.')
    self.factor_keys, self.counts, self._flat = factor_keys, counts, None
    self.has_labels = bool(factor_keys) or 'label' in source[0]

  def __len__(self) -> int:
    return len(self.source)

  def read(self, rows_R: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    rows_R = np.arange(len(self)) if rows_R is None else np.asarray(rows_R)
    first = self.source[int(rows_R[0])] if len(rows_R) else self.source[0]
    x = np.empty((len(rows_R), *np.shape(first['image'])), np.uint8)
    y = np.empty(len(rows_R), np.int64) if self.has_labels else None
    for start in range(0, len(rows_R), READ_CHUNK):
      for i, record in enumerate(_records(self.source, rows_R[start:start + READ_CHUNK]), start):
        x[i] = record['image']
        if y is not None:
          y[i] = self._label(record)
    if y is not None and len(rows_R) == len(self) and self.factor_keys:
      self._flat = y.astype(np.int32)
    return arrays.images(x, self.where), arrays.labels(y, len(x), self.where)

  def _label(self, record: dict[str, Any]) -> int:
    """The record's ``label``, or with factors its flat factor index."""
    if not self.factor_keys:
      return record['label']
    return int(np.ravel_multi_index(tuple(int(record[k]) for k in self.factor_keys), self.counts))

  def flat_all(self) -> np.ndarray:
    """The flat factor index of every record (int32 N), kept from a whole read or read once."""
    if self._flat is None:
      self._flat = self.read(None)[1]
    return self._flat


def _records(source: Any, rows: np.ndarray) -> list[dict[str, Any]]:
  """Records ``rows`` of a data source: a batched read where supported, else one at a time
  (tfds's mock data sources lack a working ``__getitems__``)."""
  try:
    return list(source.__getitems__([int(r) for r in rows]))
  except (AttributeError, TypeError):
    return [source[int(r)] for r in rows]


def _source(tfds: Any, name: str, data_dir: str | None, split: str) -> Any:
  """tfds.data_source for one split, downloading and preparing it if needed. Raises DataError (no such
  tfds dataset), DatasetUnavailableError (the download failed)."""
  import requests  # noqa: PLC0415  (tfds downloads with requests)
  download_errors = (requests.exceptions.RequestException, ConnectionError, TimeoutError,
                     urllib.error.URLError, tfds.download.DownloadError)
  try:
    with _few_download_retries():
      return tfds.data_source(name, split=split, data_dir=data_dir, download=True)
  except tfds.core.registered.DatasetNotFoundError:
    from aelab.data import sources  # noqa: PLC0415
    raise DataError(f'data.name={name!r} is neither one of {sources.available()} nor a known '
                    'tensorflow-datasets dataset (see tfds.list_builders()) nor a module path; check the spelling.'
                    ) from None
  except download_errors as e:
    raise arrays.DatasetUnavailableError(_unavailable_message(name, data_dir)) from e


def _unavailable_message(name: str, data_dir: str | None) -> str:
  """What failed and the offline alternatives, as command-line flags."""
  data_dir = data_dir or 'the tfds default, ~/tensorflow_datasets'
  return (f'tensorflow-datasets could not download {name!r} (no network?). Offline, use '
          '--config.data.name=digits (bundled with scikit-learn); '
          '--config.data.name=idx --config.data.path=DIR (a directory of MNIST IDX files, e.g. '
          't10k-images-idx3-ubyte.gz); --config.data.name=npz or csv with --config.data.path=FILE; '
          f'or prepare {name!r} with tfds on a machine with network and copy it into '
          f'--config.data.tfds.data_dir (now: {data_dir}).')


def fingerprint(data_config: Any) -> dict[str, Any]:
  """``{'tfds': name, 'version': ..., 'splits': {split: examples}}`` of the prepared dataset (name alone when
  tensorflow-datasets cannot tell: not installed, or not prepared)."""
  found: dict[str, Any] = {'tfds': data_config.name}
  try:
    import tensorflow_datasets as tfds  # noqa: PLC0415
    builder = tfds.builder(data_config.name, data_dir=data_dir_of(data_config))
    found['version'] = str(builder.version)
    if builder.is_prepared():
      found['splits'] = {k: int(v.num_examples) for k, v in sorted(builder.info.splits.items())}
  except Exception:  # noqa: BLE001  (tfds raises many kinds for a name it cannot build offline)
    pass
  return found


@contextlib.contextmanager
def _few_download_retries() -> Iterator[None]:
  """Lowers tfds's download retries (10, about 200 s of backoff offline) for the duration."""
  from tensorflow_datasets.core.download import downloader  # noqa: PLC0415
  retries = getattr(downloader, 'MAX_RETRIES', DOWNLOAD_RETRIES)
  downloader.MAX_RETRIES = min(retries, DOWNLOAD_RETRIES)
  try:
    yield
  finally:
    downloader.MAX_RETRIES = retries


def stored_megabytes(data_config: Any) -> float:
  """The stored size of the dataset's images (uint8, every split that training reads), in MB, from the
  prepared dataset's metadata (0 when it is not prepared or unknown: then it is read in memory)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415
  try:
    builder = tfds.builder(name_of(data_config), data_dir=data_dir_of(data_config))
  except tfds.core.registered.DatasetNotFoundError:
    return 0.0
  if not builder.is_prepared():
    return 0.0
  splits, image = builder.info.splits, builder.info.features['image'].shape
  return sum(split.num_examples for split in splits.values()) * float(np.prod(image)) / 2**20
