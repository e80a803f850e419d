"""Training images that stream from host storage through grain, for data that does not fit in memory.

``load(config.data)`` returns a ``data.Dataset`` whose ``train`` is a :class:`Stream` (random access to
the training images, read a batch at a time) when the data is streamed, and ``data.load``'s in-memory
arrays otherwise. Data is streamed when ``data.stream`` is True, or when the training images would take
more than ``data.stream_above_mb`` MB (the stored bytes times the copies made: :func:`in_memory_megabytes`;
0: never automatically). The test split stays in memory as stored (uint8 images) and is evaluated in
batches on the device (cap it with ``data.max_test_examples``). The training images are read through the source's
reader (``aelab.data.sources``), the same one ``data.load`` reads, so both raise the same errors:

- ``data.name='npz'``: an ``.npz`` (``np.savez``) or ``.npy``, its rows read in place (:class:`NpyFile`);
  a member compressed by ``np.savez_compressed`` is decompressed into memory first.
- a tensorflow-datasets name: ``tfds.data_source`` (ArrayRecord files, read a batch at a time).
- ``data.name='images'``: a folder of PNG / JPEG files (``aelab.data.images.ImageFolder``), each decoded and
  resized as it is read.
- ``data.name='shapes3d'`` (h5py) and ``'mpi3d'`` (rows read in place), with their factors (the source's
  ``finish`` runs on the streamed dataset: ``aelab.data.factors``).
- a source read into memory (digits, idx, shapes2d): ``data.load``'s arrays, streamed from host memory.
- any other object: :func:`dataset` takes any random-access object with ``__len__`` and ``__getitem__``
  (records are image arrays, or dicts with an ``'image'`` array).

:func:`epoch_batches` is the grain pipeline of one epoch, built of grain's own transformations: this
process's shard (a slice), shuffled with a seed drawn from ``(seed, epoch)``, batched, read by grain's
worker threads and prefetched while the device trains, and grouped into chunks of ``data.stream_chunk``
batches, one compiled call each (``aelab/train/engine.py``). The iterator's state (``get_state()``) is
saved as the ``data_iterator`` item of the group's orbax checkpoint (``aelab/train/checkpoints.py``).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

import ml_collections
import numpy as np

if TYPE_CHECKING:
  import grain

from aelab import data

from aelab.data import arrays, sources
from aelab.data.sources.npz import NpyFile
from aelab.errors import ConfigError



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
    if isinstance(self.source, arrays.Reader):  # a source's reader checks what it reads
      return self.source[rows]
    if isinstance(self.source, (np.ndarray, NpyFile)):
      x = self.source[rows]
    else:
      try:  # a batched read where the source has one (tfds's mock sources have a broken one)
        records = list(self.source.__getitems__([int(r) for r in rows]))
      except (AttributeError, TypeError):
        records = [self.source[int(r)] for r in rows]
      x = np.stack([np.asarray(r['image'] if isinstance(r, dict) else r) for r in records])
    return arrays.images(x, self.where)


# Copies of the data that reading it in memory makes at its peak: the file read, the train / test parts taken from
# it, and the copy on the device (on a CPU, in the same memory).
IN_MEMORY_COPIES = 3


def should_stream(data_config: ml_collections.ConfigDict) -> bool:
  """True when ``data.stream`` is set, or reading the data of an npz / tfds source in memory would take more
  than ``data.stream_above_mb`` MB (:func:`in_memory_megabytes`)."""
  if data_config.get('stream'):
    return True
  limit = data_config.get('stream_above_mb') or 0
  if not limit:
    return False
  return in_memory_megabytes(data_config) > limit


def in_memory_megabytes(data_config: ml_collections.ConfigDict) -> float:
  """The memory, in MB, that reading the data in memory would take at its peak: its stored bytes (uint8
  images: one byte a pixel; float arrays: four) times :data:`IN_MEMORY_COPIES`. The stored bytes come from
  the source module's optional ``stored_megabytes(data_config)`` (from a file's header or a prepared tfds
  dataset's metadata, without reading the data: npz, dsprites, shapes3d, mpi3d, activations, tfds); 0 for a
  source without one or data it cannot size (then it is read in memory)."""
  try:
    found = sources.module(data_config.name)
  except ConfigError:
    return 0.0  # data.load says what is wrong with data.name
  sized = getattr(found, 'stored_megabytes', None)
  return sized(data_config) * IN_MEMORY_COPIES if sized is not None else 0.0


def load(data_config: ml_collections.ConfigDict) -> data.Dataset:
  """``data.load(data_config)``, or the same dataset with its training images streamed (see the module
  docstring): ``train`` a :class:`Stream` in the order ``data.load`` would give them (same seeded
  train / test split, same ``max_*_examples``), the test split in memory as ``data.load`` returns it.
  Labels of streamed training data are not loaded (``y_train`` None). The source's reader
  (``aelab.data.sources``) is the one ``data.load`` reads, so both raise the same errors.

  Raises data.DataError / DataNotFoundError / DatasetUnavailableError as ``data.load`` does, and
  DataError for tabular data (streaming reads images).
  """
  if not should_stream(data_config):
    return data.load(data_config)
  read = data.source(data_config).read(data_config)
  if read.kind != 'image' and not read.streams:
    raise data.DataError(f'{read.train.where}: data.stream=True streams images (N x H x W [x C]) and activation '
                         'shards; this source is tabular: set data.stream=False.')
  if isinstance(read.train.reader, arrays.Rows) or read.train.x_max != 255:  # in memory already (digits, idx, ...)
    loaded = data.load(data_config)
    streamed = dataset(loaded.train.reshape(-1, *loaded.shape), loaded.test, loaded.y_test, loaded.shape,
                       data_config, where=f'{data_config.name} in memory', x_max=loaded.x_max)
    return dataclasses.replace(streamed, extras=loaded.extras)  # the factors of shapes2d, cars3d: same order
  return _streamed(read, data_config)


def _streamed(read: arrays.Read, data_config: ml_collections.ConfigDict) -> data.Dataset:
  """The training split read as it streams, the test split (or the seeded held-out part of train) in memory."""
  reader, where = read.train.reader, read.train.where
  if read.test is None:
    train_idx, test_idx = _holdout(len(reader), data_config, where, read.test_fraction)
    test = reader
  else:
    train_idx = np.arange(len(reader))[:data_config.get('max_train_examples') or None]
    test = read.test.reader
    test_idx = np.arange(len(test))[:data_config.get('max_test_examples') or None]
  x_test, y_test = test.read(test_idx)
  if read.kind != 'image':  # tabular shards (activations): float32 rows, as their reader returns them
    return data.Dataset(Stream(reader, train_idx, where), None, x_test, y_test, x_test.shape[1:], read.kind,
                        data_config.name, dict(read.extras))
  shape = x_test.shape[1:]
  ds = dataset(reader, data.test_images(x_test, data_config, where), y_test, shape, data_config, train_idx, where)
  ds = dataclasses.replace(ds, extras=dict(read.extras))
  return read.finish(ds) if read.finish else ds


def dataset(source: Any, x_test: np.ndarray, y_test: np.ndarray | None, shape: tuple[int, ...],
            data_config: ml_collections.ConfigDict, indices: np.ndarray | None = None,
            where: str = 'stream', x_max: int = 255) -> data.Dataset:
  """A streamed image ``data.Dataset``: training images read from ``source`` (see :class:`Stream`; e.g.
  an image-folder source) at ``indices``, and in-memory test images ``x_test`` as stored (M x D uint8, the
  value ``x_max`` meaning 1.0, or float32 in [0, 1]; transformed as ``data.load`` does: no float32 copy of
  a uint8 split is made). ``data.binarize`` applies to each batch on the device."""
  train = Stream(source, indices, where)
  if int(np.prod(train.example_shape)) != int(np.prod(shape)):
    raise data.DataError(f'{where}: training images of shape {train.example_shape}, test images of {shape}.')
  return data.Dataset(train, None, x_test, y_test, tuple(shape), 'image', data_config.name, x_max=x_max)


def _holdout(n: int, data_config: ml_collections.ConfigDict, where: str, fraction: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
  """Train and test indices of ``data.load``'s seeded split of ``n`` examples, after ``max_*_examples``
  (``fraction``: the source's own held-out fraction, else ``data.test_fraction``)."""
  fraction = fraction or data_config.get('test_fraction') or 0.2
  train, test = data.holdout_indices(n, fraction, data_config.get('split_seed') or 0, where)
  return train[:data_config.get('max_train_examples') or None], test[:data_config.get('max_test_examples') or None]


def epoch_batches(train: Stream, batch_size: int, seed: int, epoch: int, *, shard_index: int = 0,
                  shard_count: int = 1, chunk: int | None = None, workers: int = 2, prefetch: int = 16,
                  state: dict | None = None) -> 'grain.DatasetIterator':
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
  import grain  # noqa: PLC0415  (only a streamed run pays its import)
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


class SharedBatches:
  """One epoch's chunks read once for ``consumers`` readers (the groups of a sweep on one stream): the first
  reader of an epoch builds its grain iterator (:func:`epoch_batches`), every reader gets every chunk in the
  same order, and a chunk is dropped once each reader still taking part has taken it. A reader more than
  ``ahead`` chunks ahead of the slowest waits, so at most ``ahead`` chunks per epoch are held. A reader that
  stops taking chunks (its group finished or failed) leaves (``slot.leave()``), else the others would wait
  for it. An error of the read (a damaged shard) is raised in every reader of that epoch.
  """

  def __init__(self, consumers: int, ahead: int = 4):
    self.free, self.active, self.ahead = list(range(consumers)), set(range(consumers)), ahead
    self.cond = threading.Condition()
    self.compute = threading.Lock()  # held by the group whose chunk is on the device (see aelab/train/loop.py)
    self.epochs: dict[int, _SharedEpoch] = {}

  def slot(self) -> _Slot:
    """One reader's handle (of the ``consumers``): ``batches(epoch, make)`` and ``leave()`` (idempotent)."""
    with self.cond:
      return _Slot(self, self.free.pop(0))

  def leave(self, reader: int) -> None:
    """Reader ``reader`` takes no more chunks: those only it had not taken yet are dropped."""
    with self.cond:
      self.active.discard(reader)
      for epoch, shared in list(self.epochs.items()):
        shared.drop_taken(self.active)
        if self.active <= shared.finished:
          del self.epochs[epoch]
      self.cond.notify_all()

  def batches(self, epoch: int, reader: int, make: Callable[[], Any]) -> _SharedReader:
    """Reader ``reader``'s pass over ``epoch``'s chunks (an iterator with ``get_state()``); ``make()`` builds
    the grain iterator if this is the epoch's first reader."""
    with self.cond:
      shared = self.epochs.setdefault(epoch, _SharedEpoch(make))
    return _SharedReader(self, epoch, shared, reader)


class _Slot:
  """A reader's handle on :class:`SharedBatches`: its epochs' chunks, and :meth:`leave` once."""

  def __init__(self, owner: SharedBatches, reader: int):
    self.owner, self.reader, self.left = owner, reader, False

  def batches(self, epoch: int, make: Callable[[], Any]) -> _SharedReader:
    return self.owner.batches(epoch, self.reader, make)

  def computing(self) -> threading.Lock:
    """The lock a group holds while its chunk trains: one group's program at a time, so the groups' working
    memory (models x batch x d_in per intermediate) does not add up."""
    return self.owner.compute

  def leave(self) -> None:
    if not self.left:
      self.left = True
      self.owner.leave(self.reader)


class _SharedEpoch:
  """The state of one shared epoch: its iterator, the chunks read and not yet taken by every reader
  (``{index: (chunk, readers that took it)}``), how many were read, whether the iterator ended, and the
  readers that finished the epoch."""

  def __init__(self, make: Callable[[], Any]):
    self.make, self.iterator, self.chunks = make, None, {}
    self.produced, self.producing, self.ended, self.finished = 0, False, False, set()
    self.error: BaseException | None = None
    self.state: dict | None = None

  def drop_taken(self, active: set[int]) -> None:
    for i in [i for i, (_, takers) in self.chunks.items() if active <= takers]:
      del self.chunks[i]


class _SharedReader:
  """One reader's pass over a shared epoch (see :class:`SharedBatches`)."""

  def __init__(self, owner: SharedBatches, epoch: int, shared: _SharedEpoch, reader: int):
    self.owner, self.epoch, self.shared, self.reader = owner, epoch, shared, reader

  def __iter__(self) -> Iterator[Any]:
    index = 0
    while (chunk := self._take(index)) is not None:
      yield chunk
      index += 1

  def _take(self, index: int) -> Any:
    """Chunk ``index``, reading it when it is this reader's turn; None at the end of the epoch."""
    while True:
      with self.owner.cond:
        found = self._wait_for(index)
      if found is not _READ:
        return found
      self._produce()

  def _wait_for(self, index: int) -> Any:
    """Under the lock: chunk ``index``, None at the end, or ``_READ`` when this reader is to read the next."""
    owner, shared = self.owner, self.shared
    while True:
      if shared.error is not None:
        raise shared.error
      if index in shared.chunks:
        chunk, takers = shared.chunks[index]
        takers.add(self.reader)
        shared.drop_taken(owner.active)
        owner.cond.notify_all()
        return chunk
      if shared.ended and index >= shared.produced:
        self._finish()
        return None
      if index < shared.produced:
        raise RuntimeError(f'chunk {index} of epoch {self.epoch} was dropped before reader {self.reader} took it')
      if not shared.producing and len(shared.chunks) < owner.ahead:
        shared.producing = True
        return _READ
      owner.cond.wait()

  def _produce(self) -> None:
    """Reads the next chunk (outside the lock: the others take what is there meanwhile)."""
    shared = self.shared
    try:
      shared.iterator = shared.iterator or iter(shared.make())
      chunk, error = next(shared.iterator), None
    except StopIteration:
      chunk, error = None, None
    except Exception as e:  # noqa: BLE001  (a read error goes to every reader of the epoch)
      chunk, error = None, e
    with self.owner.cond:
      shared.producing = False
      if error is not None:
        shared.error = error
      elif chunk is None:
        shared.ended, shared.state = True, shared.iterator.get_state()
      else:
        shared.chunks[shared.produced] = (chunk, set())
        shared.produced += 1
      self.owner.cond.notify_all()

  def _finish(self) -> None:
    """This reader is through the epoch (called under the lock); the last one drops the epoch."""
    self.shared.finished.add(self.reader)
    if self.owner.active <= self.shared.finished:
      self.owner.epochs.pop(self.epoch, None)
    self.owner.cond.notify_all()

  def get_state(self) -> dict | None:
    """The grain iterator's state at the end of the epoch (the same for every reader)."""
    return self.shared.state


_READ = object()  # _SharedReader._wait_for: this reader reads the next chunk
