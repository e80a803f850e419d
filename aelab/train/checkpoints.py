"""Checkpoints of a group of models: one orbax save of the stacked state (leading model axis), written
in the background while training goes on, and a pointer in each run's directory.

A group's checkpoints live in one directory (``<workdir>/checkpoints`` for a single run, a group of one;
``<sweep workdir>/groups/<id>/checkpoints`` for a sweep group), one step per checkpointed epoch. Each
run's directory holds ``checkpoint.json``: ``{"directory": relative path, "index": m, "epoch": e}``, the
run's row ``m`` in that directory's states and its last good epoch ``e``. Any run restores from its
pointer alone, so a run trained in a sweep resumes as a single run and the other way round.

With several processes (``jax.distributed``) each process checkpoints only its own groups, so orbax runs
per process (:func:`process_options`): every process is its own primary host and the only member of its
barriers, and nothing waits for the others; the directories only share the file system.
"""
import asyncio
import json
import logging
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src.serialization import ocdbt_utils, tensorstore_utils

POINTER = 'checkpoint.json'


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


class _ThisProcessNumpyHandler(ocp.type_handlers.NumpyHandler):
  """orbax's handler of host (numpy) arrays, writing on every process: orbax's own takes host arrays as
  replicated and writes them from process 0 only, so another process's checkpoint would hold no data.
  The same writes as ``NumpyHandler._background_serialize`` (orbax 0.12), without that condition."""

  async def _background_serialize(self, values, infos, args=None):
    writes = []
    for value, info, arg in zip(values, infos, args or [ocp.SaveArgs()] * len(values)):
      await info.await_path_creation()
      subdir = ocdbt_utils.get_process_index_for_subdir(use_ocdbt=info.is_ocdbt_checkpoint,
                                                        override_ocdbt_process_id=self._override_ocdbt_process_id)
      spec = tensorstore_utils.build_array_write_spec(
          info=info, arg=arg, global_shape=value.shape, local_shape=value.shape, dtype=value.dtype,
          use_ocdbt=info.is_ocdbt_checkpoint, process_index=subdir, metadata_key=self._metadata_key)
      writes.append(self._open_and_write(value, spec.json, info.ts_context))
    await asyncio.gather(*writes)


def _use_this_process_handler() -> None:
  """With several processes, checkpoints hold host arrays (see ``GroupCheckpoints.save``), which every
  process must write itself: registers :class:`_ThisProcessNumpyHandler` (once) and quiets orbax's
  warnings about that and, at every save, that it logs no global sizes without a primary host."""
  if not isinstance(ocp.type_handlers.get_type_handler(np.ndarray), _ThisProcessNumpyHandler):
    logging.getLogger('absl').addFilter(
        lambda record: not any(s in record.getMessage() for s in ('for `primary_host=None`', 'overriding np.ndarray')))
    ocp.type_handlers.register_type_handler(np.ndarray, _ThisProcessNumpyHandler(), override=True)


class GroupCheckpoints:
  """Asynchronous orbax checkpoints of one group's stacked state in ``directory``.

  ``keep``: how many of the latest epochs to keep, at least 2 (so that a latest save found corrupt has an
  intact one before it, see :func:`candidates`); epochs in ``pinned`` (the last good epoch of a run whose
  loss stopped being finite) are kept too.
  """

  def __init__(self, directory: str, keep: int = 2):
    self.directory, self.keep = os.path.abspath(directory), max(keep, 2)
    multiprocessing = process_options()
    if jax.process_count() > 1:
      _use_this_process_handler()
    os.makedirs(self.directory, exist_ok=True)  # orbax creates no directory with active_processes set
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=False, enable_async_checkpointing=True,
                                           enable_background_delete=True, multiprocessing_options=multiprocessing)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=ocp.StandardCheckpointHandler(multiprocessing_options=multiprocessing))

  def save(self, epoch: int, state: Any, pinned: set[int] = frozenset()) -> None:
    """Starts writing ``state`` (leading model axis) as ``epoch``; returns once it is copied off the
    device, then deletes epochs beyond the ``keep`` latest that are not ``pinned``."""
    if jax.process_count() > 1:  # host arrays: this process's arrays, whatever orbax takes as global
      state = jax.device_get(state)
    self.manager.save(epoch, args=ocp.args.StandardSave(state))
    steps = sorted(self.manager.all_steps())
    for step in steps[:-self.keep]:
      if step not in pinned and step != epoch:
        self.manager.delete(step)

  def wait(self) -> None:
    """Blocks until every started save is on disk."""
    self.manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def shapes(self, epoch: int) -> list[tuple[int, ...]]:
    """Shapes of the stored arrays of ``epoch`` (with the leading model axis), in tree order."""
    return [tuple(leaf.shape) for leaf in jax.tree.leaves(self.manager.item_metadata(epoch))]

  def restore(self, epoch: int, abstract_state: Any) -> Any:
    """The stored state of ``epoch`` (host arrays) shaped like ``abstract_state`` (leading model axis)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract_state)
    state = self.manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
    return jax.tree.map(np.asarray, state)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


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
  tmp = os.path.join(run_dir, POINTER + '.tmp')
  with open(tmp, 'w') as f:
    json.dump(pointer, f)
  os.replace(tmp, os.path.join(run_dir, POINTER))


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
  """Deletes the step of ``epoch`` in ``directory`` (one that does not read back: a later save of that
  epoch would otherwise find it in the way)."""
  shutil.rmtree(os.path.join(directory, str(epoch)), ignore_errors=True)
