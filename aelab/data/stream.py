"""Training images that stream from host storage through grain, for data that does not fit in memory.

``load(config.data)`` returns a ``data.Dataset`` whose ``train`` is a :class:`Stream` (random access to
the training images, read a batch at a time) when the data is streamed, and ``data.load``'s in-memory
arrays otherwise. Data is streamed when ``data.stream`` is True, or when the training images would take
more than ``data.stream_above_mb`` MB as float32 (0: never automatically). The test split stays in
memory (cap it with ``data.max_test_examples``). Sources:

- ``data.name='npz'``: an uncompressed ``.npz`` (``np.savez``) or ``.npy``, its rows read in place
  (:class:`NpyFile`). A member of an archive written by ``np.savez_compressed`` cannot be read in
  place: re-save it with ``np.savez``.
- a tensorflow-datasets name: ``tfds.data_source`` (ArrayRecord files, read a batch at a time).
- ``data.name='images'``: a folder of PNG / JPEG files (``aelab.data.images.ImageFolder``), each decoded and
  resized as it is read.
- any other source: :func:`dataset` takes any random-access object with ``__len__`` and
  ``__getitem__`` (records are image arrays, or dicts with an ``'image'`` array).
- any other ``data.name`` with ``data.stream=True``: ``data.load``'s arrays, streamed from host memory.

:func:`epoch_batches` is the grain pipeline of one epoch, built of grain's own transformations: this
process's shard (a slice), shuffled with a seed drawn from ``(seed, epoch)``, batched, read by grain's
worker threads and prefetched while the device trains, and grouped into chunks of ``data.stream_chunk``
batches, one compiled call each (``aelab/train/engine.py``). The iterator's state (``get_state()``) is
saved as the ``data_iterator`` item of the group's orbax checkpoint (``aelab/train/checkpoints.py``).
"""
from __future__ import annotations

import os
import pathlib
import weakref
import zipfile
from typing import Any

import grain
import ml_collections
import numpy as np

from aelab import data

from aelab.data import images

class Stream:
  """The training examples of a streamed dataset: ``len``, ``shape`` (N, D) and ``read(indices)``.

  Args:
    source: a numpy array or :class:`NpyFile` (N x ...), or any object with ``__len__`` and ``__getitem__``
      returning an image array or a dict with an ``'image'`` array; ``__getitems__`` is used when present.
    indices: which of ``source``'s examples are the training examples, in order (default: all).
    where: the source's name, for error messages.
  """

  def __init__(self, source: Any, indices: np.ndarray | None = None, where: str = 'stream'):
    self.source, self.where = source, where
    self.indices = np.arange(len(source)) if indices is None else np.asarray(indices)
    if len(self.indices) == 0:
      raise data.DataError(f'{where} has 0 training examples; check data.path.')
    first = self._records(self.indices[:1])
    self.example_shape, self.dtype = first.shape[1:], first.dtype

  def __len__(self) -> int:
    return len(self.indices)

  @property
  def shape(self) -> tuple[int, int]:
    return len(self), int(np.prod(self.example_shape))

  def read(self, idx_B: np.ndarray) -> np.ndarray:
    """Examples ``idx_B`` (positions in the training set) flattened: uint8 B x D (0..255) or float32 in
    [0, 1]. Raises DataError for a record of another shape or for float values outside [0, 1]."""
    x = self._records(self.indices[idx_B])
    if x.shape[1:] != self.example_shape:
      raise data.DataError(f'{self.where}: a record of shape {x.shape[1:]} among records of shape '
                           f'{self.example_shape}; every image must have the same size.')
    return x.reshape(len(x), -1)

  def _records(self, rows: np.ndarray) -> np.ndarray:
    if isinstance(self.source, (np.ndarray, NpyFile)):
      x = self.source[rows]
    else:
      try:  # a batched read where the source has one (tfds's mock sources have a broken one)
        records = list(self.source.__getitems__([int(r) for r in rows]))
      except (AttributeError, TypeError):
        records = [self.source[int(r)] for r in rows]
      x = np.stack([np.asarray(r['image'] if isinstance(r, dict) else r) for r in records])
    return _unit_or_uint8(x, self.where)


def _unit_or_uint8(x: np.ndarray, where: str) -> np.ndarray:
  """uint8 images as they are; bool as uint8 0 / 255; floats as float32 (checked to lie in [0, 1])."""
  if x.ndim == 3:  # N x H x W: one channel
    x = x[..., None]
  if x.dtype == np.uint8:
    return x
  if x.dtype == bool:
    return x.astype(np.uint8) * np.uint8(255)
  if not np.issubdtype(x.dtype, np.floating):
    raise data.DataError(f'{where}: images of dtype {x.dtype}; store uint8 (0..255) or floats in [0, 1].')
  if not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1):
    raise data.DataError(f'{where}: float images must be finite and lie in [0, 1]; rescale them (e.g. x / 255) '
                         'or store uint8.')
  return x.astype(np.float32)


class NpyFile:
  """Random access to the rows of an array stored in an ``.npy`` file or an uncompressed ``.npz`` member,
  read with ``os.pread`` (no memory map: the pages of a mapped file that a process touches count as its
  resident memory, and with the kernel's fault-around a random row maps up to megabytes of the file, so a
  mapped 784 MB file was seen to take ~1.2 GB). Indexing with an int array returns those rows.

  Args:
    path: the ``.npy`` or ``.npz`` file.
    member: the array's name in an ``.npz`` (``x``).

  Raises:
    data.DataError: the member is missing, compressed (``np.savez_compressed``: re-save with ``np.savez``,
      or set ``data.stream=False`` when the images fit in memory) or not a C-ordered numeric array.
  """

  def __init__(self, path: str | os.PathLike, member: str = 'x'):
    self.path = pathlib.Path(path)
    offset = _member_offset(self.path, member) if zipfile.is_zipfile(self.path) else 0
    with open(self.path, 'rb') as f:
      f.seek(offset)
      try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, fortran, self.dtype = read(f)
      except ValueError as e:
        raise data.DataError(f'{path}: not an .npy / .npz array ({e}); save it with np.savez or np.save.') from e
      self.start = f.tell()
    if fortran or self.dtype.hasobject:
      raise data.DataError(f'{path}: {member!r} must be a C-ordered numeric array to be streamed.')
    self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
    self.ndim = len(self.shape)
    self._fd = os.open(self.path, os.O_RDONLY)
    weakref.finalize(self, os.close, self._fd)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (ints in [0, N)), in that order: an array of len(rows) x shape[1:]."""
    rows = np.asarray(rows)
    buffer = b''.join(os.pread(self._fd, self.row_bytes, self.start + int(r) * self.row_bytes) for r in rows)
    return np.frombuffer(buffer, self.dtype).reshape(len(rows), *self.shape[1:])


def _member_offset(path: pathlib.Path, member: str) -> int:
  """Where the bytes of ``member``.npy start in the zip archive ``path`` (after its local header)."""
  with zipfile.ZipFile(path) as archive:
    name = f'{member}.npy'
    if name not in archive.namelist():
      raise data.DataError(f"{path} has no array {member!r} (it has: {archive.namelist()}); save the images "
                           f'as {member}, e.g. np.savez(path, x=images, y=labels).')
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
      raise data.DataError(f'{path}: array {member!r} is compressed (np.savez_compressed), and streaming reads '
                           'its rows in place: re-save it uncompressed with np.savez(path, x=..., y=...), or '
                           'set data.stream=False if the images fit in memory.')
  with open(path, 'rb') as f:
    f.seek(info.header_offset + 26)
    name_len, extra_len = np.frombuffer(f.read(4), '<u2')
  return info.header_offset + 30 + int(name_len) + int(extra_len)


def should_stream(data_config: ml_collections.ConfigDict) -> bool:
  """True when ``data.stream`` is set, or the training images of an npz / tfds source would take more
  than ``data.stream_above_mb`` MB as float32 (read from the file header or the tfds metadata)."""
  if data_config.get('stream'):
    return True
  limit = data_config.get('stream_above_mb') or 0
  if not limit:
    return False
  return _float32_megabytes(data_config) > limit


def _float32_megabytes(data_config: ml_collections.ConfigDict) -> float:
  name, path = data_config.name, data_config.get('path')
  if name == 'npz' and path and pathlib.Path(path).exists():
    try:
      return float(np.prod(NpyFile(path).shape)) * 4 / 2**20
    except data.DataError:
      return 0.0  # data.load reports what is wrong with the file
  if name in ('digits', 'idx', 'csv', 'npz'):
    return 0.0
  builder = _tfds_builder(data_config)
  if builder is None:
    return 0.0
  splits, image = builder.info.splits, builder.info.features['image'].shape
  return splits['train'].num_examples * float(np.prod(image)) * 4 / 2**20


def _tfds_builder(data_config: ml_collections.ConfigDict) -> Any:
  """The prepared tfds builder of ``data.name``, or None when it is not prepared (data.load prepares it)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415  (heavy; only for tfds names)
  try:
    builder = tfds.builder(data_config.name, data_dir=data_config.get('tfds_data_dir') or None)
  except tfds.core.registered.DatasetNotFoundError:
    return None
  return builder if builder.is_prepared() else None


def load(data_config: ml_collections.ConfigDict) -> data.Dataset:
  """``data.load(data_config)``, or the same dataset with its training images streamed (see the module
  docstring): ``train`` a :class:`Stream` in the order ``data.load`` would give them (same seeded
  train / test split, same ``max_*_examples``), the test split in memory as ``data.load`` returns it.
  Labels of streamed training data are not loaded (``y_train`` None).

  Raises data.DataError / FileNotFoundError / DatasetUnavailableError as ``data.load`` does, and
  DataError for tabular data (streaming reads images) or a compressed npz.
  """
  if not should_stream(data_config):
    return data.load(data_config)
  if data_config.name == 'npz':
    return _npz(data_config)
  if data_config.name == 'images':
    return _image_folder(data_config)
  if data_config.name in ('digits', 'idx', 'csv'):
    loaded = data.load(data_config)
    if loaded.kind != 'image':
      raise data.DataError(f'data.stream=True streams images; {data_config.name!r} is tabular: set data.stream=False.')
    return dataset(loaded.x_train.reshape(-1, *loaded.shape), loaded.x_test, loaded.y_test, loaded.shape,
                   data_config, where=f'{data_config.name} in memory')
  return _tfds(data_config)


def dataset(source: Any, x_test: np.ndarray, y_test: np.ndarray | None, shape: tuple[int, ...],
            data_config: ml_collections.ConfigDict, indices: np.ndarray | None = None,
            where: str = 'stream') -> data.Dataset:
  """A streamed image ``data.Dataset``: training images read from ``source`` (see :class:`Stream`; e.g.
  an image-folder source) at ``indices``, and in-memory test images ``x_test`` (float32 M x D in [0, 1],
  transformed as ``data.load`` does). ``data.binarize`` applies to each batch on the device."""
  train = Stream(source, indices, where)
  if int(np.prod(train.example_shape)) != int(np.prod(shape)):
    raise data.DataError(f'{where}: training images of shape {train.example_shape}, test images of {shape}.')
  return data.Dataset(train, None, x_test, y_test, tuple(shape), 'image', data_config.name)


def _holdout(n: int, data_config: ml_collections.ConfigDict, where: str) -> tuple[np.ndarray, np.ndarray]:
  """Train and test indices of ``data.load``'s seeded split of ``n`` examples, after ``max_*_examples``."""
  train, test = data.holdout_indices(n, data_config.test_fraction, data_config.split_seed, where)
  return train[:data_config.max_train_examples or None], test[:data_config.max_test_examples or None]


def _npz(data_config: ml_collections.ConfigDict) -> data.Dataset:
  path = pathlib.Path(data_config.path).expanduser()
  if not path.exists():
    raise FileNotFoundError(f'{path} does not exist; expected an .npz file with array x (N x H x W [x C]).')
  x = NpyFile(path)
  where = f'npz train file {path}'
  if x.ndim <= 2:
    raise data.DataError(f'{where}: streaming reads images (N x H x W [x C]); this is a table of shape {x.shape}: '
                         'set data.stream=False.')
  if data_config.get('test_path'):
    x_test, y_test = _npz_in_memory(pathlib.Path(data_config.test_path).expanduser())
    train_idx, test_idx = np.arange(len(x))[:data_config.max_train_examples or None], slice(
        data_config.max_test_examples or None)
  else:
    train_idx, test_idx = _holdout(len(x), data_config, where)
    x_test, y_test = x, _labels(path, len(x))
  x_test, y_test = x_test[test_idx], None if y_test is None else y_test[test_idx]
  x_test = data.test_images(x_test, data_config, where)
  shape = x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)
  return dataset(x, x_test, y_test, shape, data_config, train_idx, where)


def _image_folder(data_config: ml_collections.ConfigDict) -> data.Dataset:
  """A folder of PNG / JPEG images (``aelab.data.images.ImageFolder``): the training images decoded as they
  are read, the seeded held-out test images (``data.load``'s split) in memory."""
  if not data_config.get('path'):
    raise data.DataError('data.name=images needs data.path: a folder of PNG / JPEG images.')
  folder = images.ImageFolder(data_config.path, data_config.get('image_size'), data_config.get('channels'))
  where = f'image folder {folder.root}'
  train_idx, test_idx = _holdout(len(folder), data_config, where)
  records = [folder[int(i)] for i in test_idx]
  x_test = data.test_images(np.stack([r['image'] for r in records]), data_config, where)
  y_test = None if folder.labels is None else np.asarray([r['label'] for r in records], np.int32)
  return dataset(folder, x_test, y_test, (*folder.size_hw, folder.channels), data_config, train_idx, where)


def _labels(path: pathlib.Path, n: int) -> np.ndarray | None:
  """The npz's labels ``y`` (int32, N), or None (also for an ``.npy``, which holds no labels)."""
  if not zipfile.is_zipfile(path):
    return None
  with np.load(path) as arrays:
    y = arrays['y'] if 'y' in arrays.files else None
  if y is None:
    return None
  if y.shape != (n,):
    raise data.DataError(f'{path}: labels of shape {y.shape} for {n} examples; give one label per example.')
  return y.astype(np.int32)


def _npz_in_memory(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray | None]:
  """A (small) test npz's ``x`` and labels ``y`` (or None)."""
  if not path.exists():
    raise FileNotFoundError(f'{path} (data.test_path) does not exist; expected an .npz file with array x.')
  with np.load(path) as arrays:
    if 'x' not in arrays.files:
      raise data.DataError(f"{path} has no array 'x' (it has: {arrays.files}).")
    x = arrays['x']
  return x, _labels(path, len(x))


def _tfds(data_config: ml_collections.ConfigDict) -> data.Dataset:
  """A tfds dataset's train split streamed from its ArrayRecord files; the test split (or the seeded
  held-out part of train) in memory."""
  import tensorflow_datasets as tfds  # noqa: PLC0415
  try:
    train = tfds.data_source(data_config.name, split='train', data_dir=data_config.get('tfds_data_dir') or None,
                             download=True)
  except tfds.core.registered.DatasetNotFoundError:
    raise data.DataError(f'data.name={data_config.name!r} is not a tensorflow-datasets dataset; check the '
                         'spelling.') from None
  where = f'tfds {data_config.name!r} split train'
  if 'test' in train.dataset_info.splits:
    test = tfds.data_source(data_config.name, split='test', data_dir=data_config.get('tfds_data_dir') or None)
    test_idx, train_idx = np.arange(len(test))[:data_config.max_test_examples or None], None
    if data_config.max_train_examples:
      train_idx = np.arange(len(train))[:data_config.max_train_examples]
  else:
    test, (train_idx, test_idx) = train, _holdout(len(train), data_config, where)
  records = [test[int(i)] for i in test_idx]
  x_test = data.test_images(np.stack([r['image'] for r in records]), data_config, where)
  y_test = np.asarray([r['label'] for r in records], np.int32) if records and 'label' in records[0] else None
  return dataset(train, x_test, y_test, tuple(train.dataset_info.features['image'].shape), data_config,
                 train_idx, where)


def epoch_batches(train: Stream, batch_size: int, seed: int, epoch: int, *, shard_index: int = 0,
                  shard_count: int = 1, chunk: int | None = None, workers: int = 2, prefetch: int = 16,
                  state: dict | None = None) -> grain.DatasetIterator:
  """The grain iterator over one epoch's batches (uint8 B x D or float32) of this process's shard.

  All of it is grain's transformations: the shard is ``MapDataset.range(N)[shard_index::shard_count]``
  (process ``k`` of ``P`` reads examples ``k, k + P, ...``), shuffled by ``MapDataset.shuffle`` with a seed
  drawn from ``(seed, epoch)`` (the same order in every run with that seed), cut into its
  ``len(shard) // batch_size`` full batches (``batch(drop_remainder=True)``), each read by
  ``Stream.read`` in one of ``workers`` grain threads with up to ``prefetch`` batches ready. With ``chunk``,
  consecutive batches are grouped into ``C x B x D`` arrays of ``chunk`` batches (the last may hold fewer).
  ``state`` (the iterator's ``get_state()``, a JSON-able dict) continues an iterator where it was.

  Raises DataError when the shard holds less than one batch.
  """
  rows = grain.MapDataset.range(len(train))[shard_index::shard_count]
  if len(rows) < batch_size:
    raise data.DataError(f'{train.where}: shard {shard_index} of {shard_count} holds {len(rows)} examples, fewer '
                         f'than one batch of {batch_size}; lower train.batch_size.')
  batches = rows.shuffle(seed=epoch_seed(seed, epoch)).batch(batch_size, drop_remainder=True).map(train.read)
  batches = batches.to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch))
  if chunk is not None:
    batches = batches.batch(chunk, drop_remainder=False)
  iterator = iter(batches)
  if state is not None:
    iterator.set_state(state)
  return iterator


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle seed of ``epoch`` (an int in [0, 2**32), as grain takes), drawn from ``(seed, epoch)`` by
  numpy's ``SeedSequence``: unrelated orders for neighbouring seeds and epochs."""
  return int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0])
