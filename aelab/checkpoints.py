"""Checkpoints of a group of models: one orbax save of the stacked state (leading model axis), written
in the background while training goes on, and a pointer in each run's directory.

A group's checkpoints live in one directory (``<workdir>/checkpoints`` for a single run, a group of one;
``<sweep workdir>/groups/<id>/checkpoints`` for a sweep group), one step per checkpointed epoch. Each
run's directory holds ``checkpoint.json``: ``{"directory": relative path, "index": m, "epoch": e}``, the
run's row ``m`` in that directory's states and its last good epoch ``e``. Any run restores from its
pointer alone, so a run trained in a sweep resumes as a single run and the other way round.
"""
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

POINTER = 'checkpoint.json'


class GroupCheckpoints:
  """Asynchronous orbax checkpoints of one group's stacked state in ``directory``.

  ``keep``: how many of the latest epochs to keep, at least 2 (so that a latest save found corrupt has an
  intact one before it, see :func:`candidates`); epochs in ``pinned`` (the last good epoch of a run whose
  loss stopped being finite) are kept too.
  """

  def __init__(self, directory: str, keep: int = 2):
    self.directory, self.keep = os.path.abspath(directory), max(keep, 2)
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True, enable_async_checkpointing=True,
                                           enable_background_delete=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=ocp.StandardCheckpointHandler())

  def save(self, epoch: int, state: Any, pinned: set[int] = frozenset()) -> None:
    """Starts writing ``state`` (leading model axis) as ``epoch``; returns once it is copied off the
    device, then deletes epochs beyond the ``keep`` latest that are not ``pinned``."""
    if jax.process_count() > 1:  # orbax saves no process-local jax.Array across processes: host arrays
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
