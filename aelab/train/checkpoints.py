"""Checkpoints of a group of models: one orbax save per checkpointed epoch, written in the background
while training goes on, holding the items ``state`` (the stacked state, leading model axis),
``checksums`` (JSON: a SHA-256 of every saved array's bytes, checked on restore, so that a checkpoint
whose files were damaged without changing size is found out: :class:`DamagedCheckpoint`) and, for
streamed data, ``data_iterator`` (the grain iterator's state, JSON), and a pointer in each run's directory.

A group's checkpoints live in one directory (``<workdir>/checkpoints`` for a single run, a group of one;
``<sweep workdir>/groups/<id>/checkpoints`` for a sweep group), one step per checkpointed epoch
(``<epoch>/state``, ``<epoch>/data_iterator``). Which steps stay is orbax's preservation policy: the latest
``train.keep_checkpoints`` and the pinned last good epochs of models that diverged. Each run's directory
holds ``checkpoint.json``: ``{"directory": relative path, "index": m, "epoch": e}``, the run's row ``m``
in that directory's states and its last good epoch ``e``. Any run restores from its pointer alone, so a
run trained in a sweep resumes as a single run and the other way round.

With several processes (``jax.distributed``) each process checkpoints only its own groups, so orbax runs
per process (:func:`process_options`): every process is its own primary host and the only member of its
barriers, and nothing waits for the others; the directories only share the file system. Only orbax's
public API is used.
"""
import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from aelab.train import files

POINTER = 'checkpoint.json'
STATE, DATA_ITERATOR, CHECKSUMS = 'state', 'data_iterator', 'checksums'  # the items of a step
LEGACY_STATE = 'default'  # the state of a checkpoint written before the steps had named items


def process_options() -> ocp.options.MultiprocessingOptions:
  """orbax's options for checkpoints that this process alone writes and reads: with several processes,
  ``primary_host=None`` (this process writes its arrays and metadata itself) and
  ``active_processes={this process}`` (orbax's barriers then include no other process). One process:
  orbax's defaults."""
  if jax.process_count() == 1:
    return ocp.options.MultiprocessingOptions()
  index = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=None, active_processes={index},
                                            barrier_sync_key_prefix=f'process{index}')


@dataclasses.dataclass
class PinnedSteps(ocp.checkpoint_managers.PreservationPolicy):
  """orbax preservation policy keeping the steps in ``steps``, a set that grows while the manager lives
  (orbax's ``CustomSteps`` takes its steps once): the last good epoch of each model that diverged."""
  steps: set[int] = dataclasses.field(default_factory=set)

  def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
    del context
    return [info.step in self.steps for info in checkpoints]


_SAVING = threading.Lock()


class DamagedCheckpoint(ValueError):
  """A checkpoint's arrays read back with other bytes than were saved (their checksums differ)."""


def checksums(state: Any) -> dict[str, dict[str, str]]:
  """``{'arrays': {array path: SHA-256 hex digest of its bytes}, 'dtypes': {array path: dtype}}`` of every
  array of ``state`` (host copies)."""
  leaves = [(jax.tree_util.keystr(path), np.ascontiguousarray(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]]
  return {'arrays': {k: hashlib.sha256(leaf.tobytes()).hexdigest() for k, leaf in leaves},
          'dtypes': {k: str(leaf.dtype) for k, leaf in leaves}}


def verify(state: Any, stored: dict[str, Any], where: str) -> None:
  """Raises DamagedCheckpoint naming the arrays of ``state`` whose checksums are not ``stored``'s (arrays
  restored as another dtype than was saved are not checked: their bytes differ anyway)."""
  found = checksums(state)
  saved_dtypes = stored.get('dtypes', {})
  wrong = sorted(k for k, digest in stored['arrays'].items()
                 if found['dtypes'].get(k) == saved_dtypes.get(k) and found['arrays'].get(k) != digest)
  if wrong:
    raise DamagedCheckpoint(f'{len(wrong)} of {len(found["arrays"])} arrays of the checkpoint {where} read back with '
                            f'other bytes than were saved: checksums differ for {", ".join(wrong[:3])}'
                            f'{", ..." if len(wrong) > 3 else ""}')


class GroupCheckpoints:
  """Asynchronous orbax checkpoints of one group's stacked state in ``directory``.

  ``keep``: how many of the latest epochs orbax keeps (``LatestN``), at least 2 (so that a latest save
  found corrupt has an intact one before it, see :func:`candidates`); epochs pinned at a save (the last
  good epoch of a model whose loss stopped being finite) are kept too (:class:`PinnedSteps`).
  """

  def __init__(self, directory: str, keep: int = 2):
    self.directory, self.keep = os.path.abspath(directory), max(keep, 2)
    self.pinned = PinnedSteps()
    multiprocessing = process_options()
    os.makedirs(self.directory, exist_ok=True)  # orbax creates no directory with active_processes set
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([ocp.checkpoint_managers.LatestN(self.keep), self.pinned])
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=True, preservation_policy=policy,
                                           enable_background_delete=True, multiprocessing_options=multiprocessing)
    handlers = {STATE: ocp.StandardCheckpointHandler(multiprocessing_options=multiprocessing),
                LEGACY_STATE: ocp.StandardCheckpointHandler(multiprocessing_options=multiprocessing),
                DATA_ITERATOR: ocp.JsonCheckpointHandler(multiprocessing_options=multiprocessing),
                CHECKSUMS: ocp.JsonCheckpointHandler(multiprocessing_options=multiprocessing)}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def save(self, epoch: int, state: Any, pinned: set[int] = frozenset(), data_iterator: dict | None = None) -> None:
    """Starts writing ``state`` (leading model axis) as ``epoch``, with ``data_iterator`` (a JSON-able
    dict: the grain iterator's state) as a second item when given; returns once it is copied off the
    device, with the checksums of its arrays (:func:`checksums`). orbax then deletes the epochs beyond
    the ``keep`` latest that are not ``pinned``. Outside the main thread (the groups of a sweep that train
    together, ``aelab.train.sweep.shared_stream``) a save finishes before it returns and holds a lock
    meanwhile: async saves of several managers in one process's threads were seen to wait for each other's
    orbax signals until a 300 s timeout."""
    self.pinned.steps.update(pinned)
    state = _this_process(state)
    items = {STATE: ocp.args.StandardSave(state),
             CHECKSUMS: ocp.args.JsonSave({'algorithm': 'sha256', **checksums(state)})}
    if data_iterator is not None:
      items[DATA_ITERATOR] = ocp.args.JsonSave(data_iterator)
    if threading.current_thread() is threading.main_thread():
      self.manager.save(epoch, args=ocp.args.Composite(**items))
      return
    with _SAVING:  # groups trained in threads (a sweep's groups on one stream) save one at a time, to the end
      self.manager.save(epoch, args=ocp.args.Composite(**items))
      self.manager.wait_until_finished()

  def wait(self) -> None:
    """Blocks until every started save is on disk."""
    self.manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def shapes(self, epoch: int) -> list[tuple[int, ...]]:
    """Shapes of the stored arrays of ``epoch`` (with the leading model axis), in tree order."""
    return [tuple(leaf.shape) for leaf in jax.tree.leaves(self.manager.item_metadata(epoch)[self._state_item(epoch)])]

  def restore(self, epoch: int, abstract_state: Any) -> Any:
    """The stored state of ``epoch`` (host arrays) shaped like ``abstract_state`` (leading model axis).
    Raises DamagedCheckpoint when its arrays' checksums are not those saved (checkpoints of an aelab
    that wrote none are not checked), and orbax's errors for files it cannot read."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
    item, items = self._state_item(epoch), self.manager.item_metadata(epoch)
    wanted = {item: ocp.args.StandardRestore(abstract)}
    if CHECKSUMS in items:
      wanted[CHECKSUMS] = ocp.args.JsonRestore()
    restored = self.manager.restore(epoch, args=ocp.args.Composite(**wanted))
    state = jax.tree.map(np.asarray, restored[item])
    if CHECKSUMS in wanted:
      verify(state, restored[CHECKSUMS], f'of epoch {epoch} in {self.directory}')
    return state

  def _state_item(self, epoch: int) -> str:
    """``state``, or ``default`` in a checkpoint of an older aelab (one unnamed item, the state)."""
    return LEGACY_STATE if LEGACY_STATE in self.manager.item_metadata(epoch) else STATE

  def data_iterator(self, epoch: int) -> dict | None:
    """The ``data_iterator`` item of ``epoch`` (what :meth:`save` got), or None where it has none."""
    if DATA_ITERATOR not in self.manager.item_metadata(epoch):
      return None
    return self.manager.restore(epoch, args=ocp.args.Composite(**{DATA_ITERATOR: ocp.args.JsonRestore()}))[
        DATA_ITERATOR]

  def delete(self, epoch: int) -> None:
    """Deletes the step of ``epoch`` (one that does not read back: a later save of that epoch would
    otherwise find it in the way)."""
    self.manager.delete(epoch)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _this_process(state: Any) -> Any:
  """``state`` as arrays that this process writes itself: with several processes, host (numpy) arrays
  (orbax refuses device arrays that only this process holds), written by :class:`ThisProcessNumpyHandler`."""
  if jax.process_count() == 1:
    return state
  if not isinstance(ocp.type_handlers.get_type_handler(np.ndarray), ThisProcessNumpyHandler):
    logging.getLogger('absl').addFilter(
        lambda record: not any(s in record.getMessage() for s in ('for `primary_host=None`', 'overriding np.ndarray')))
    ocp.type_handlers.register_type_handler(np.ndarray, ThisProcessNumpyHandler(), override=True)
  return jax.device_get(state)


class ThisProcessNumpyHandler(ocp.type_handlers.NumpyHandler):
  """orbax's handler of host (numpy) arrays, writing on every process. orbax's own takes host arrays as
  replicated and writes them from process 0 only, so another process's checkpoint would hold no data;
  this one overrides the public ``serialize`` and writes each array with TensorStore at the spec orbax
  gives (``ocp.type_handlers.get_json_tspec_write``; with OCDBT, in this process's subdirectory). Reading
  is orbax's own. Registered for ``np.ndarray`` only in runs of several processes."""

  async def serialize(self, values: Sequence[np.ndarray], infos: Sequence[Any],
                      args: Sequence[Any] | None = None) -> list[Any]:
    args = args or [ocp.SaveArgs()] * len(values)
    values = [np.array(v, copy=True) for v in values]  # training goes on while they are written
    return [ocp.future.CommitFutureAwaitingContractedSignals(self._write(values, infos, args),
                                                               name='this_process_numpy')]

  async def _write(self, values: Sequence[np.ndarray], infos: Sequence[Any], args: Sequence[Any]) -> None:
    writes = []
    for value, info, arg in zip(values, infos, args, strict=True):
      await info.await_path_creation()
      spec = ocp.type_handlers.get_json_tspec_write(
          info, use_ocdbt=info.is_ocdbt_checkpoint, global_shape=value.shape, local_shape=value.shape,
          dtype=value.dtype, process_index=jax.process_index() if info.is_ocdbt_checkpoint else None,
          arg=arg)
      writes.append(_write_array(value, spec, info.ts_context))
    await asyncio.gather(*writes)


async def _write_array(value: np.ndarray, spec: dict, context: Any) -> None:
  store = await ts.open(ts.Spec(spec), create=True, open=True, context=context)
  await store.write(value)


def read_pointer(run_dir: str) -> dict[str, Any] | None:
  """``{'directory': absolute path, 'index': m, 'epoch': e}`` of ``run_dir``'s checkpoint, or None."""
  path = os.path.join(run_dir, POINTER)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    pointer = json.load(f)
  pointer['directory'] = os.path.normpath(os.path.join(run_dir, pointer['directory']))
  return pointer


def write_pointer(run_dir: str, directory: str, index: int, epoch: int) -> None:
  """Points ``run_dir`` at row ``index`` of ``directory``'s epoch ``epoch`` (atomically)."""
  pointer = {'directory': os.path.relpath(directory, run_dir), 'index': index, 'epoch': epoch}
  with files.replacing(os.path.join(run_dir, POINTER)) as f:
    json.dump(pointer, f)


def candidates(run_dir: str) -> list[tuple[str, int, int]]:
  """``(directory, index, epoch)`` of every checkpoint on disk that holds ``run_dir``'s run at or before
  its pointer's epoch (a save still in flight when the process stopped is skipped), newest first: the
  engine restores the first that reads back intact."""
  pointer = read_pointer(run_dir)
  if pointer is None or not os.path.isdir(pointer['directory']):
    return []
  steps = sorted((s for s in ocp.utils.checkpoint_steps(pointer['directory']) if s <= pointer['epoch']), reverse=True)
  return [(pointer['directory'], pointer['index'], s) for s in steps]


def latest(run_dir: str) -> tuple[str, int, int] | None:
  """The first of :func:`candidates` (the newest checkpoint of ``run_dir``'s run), or None."""
  found = candidates(run_dir)
  return found[0] if found else None


def discard(directory: str, epoch: int) -> None:
  """Deletes the step of ``epoch`` in ``directory`` through orbax (see :meth:`GroupCheckpoints.delete`)."""
  ckpt = GroupCheckpoints(directory)
  try:
    ckpt.delete(epoch)
  finally:
    ckpt.close()


def data_iterator(run_dir: str, epoch: int) -> dict | None:
  """The ``data_iterator`` item of ``run_dir``'s checkpoint of ``epoch`` (found through its pointer), or
  None (no such checkpoint, or one of in-memory data)."""
  pointer = read_pointer(run_dir)
  if pointer is None or not os.path.isdir(pointer['directory']) or epoch not in ocp.utils.checkpoint_steps(
      pointer['directory']):
    return None
  ckpt = GroupCheckpoints(pointer['directory'])
  try:
    return ckpt.data_iterator(epoch)
  finally:
    ckpt.close()
