"""The groups a set of runs trains in: runs of one structure that resume from the same epoch train as one
group (their states stacked on a leading model axis), each restored from its newest intact checkpoint
(:func:`restore`); when models of a group diverge, the others go on as a new, smaller group
(:func:`survivors`).
"""
import dataclasses
import hashlib
import os
from typing import Any, Callable

import jax
import numpy as np

from aelab import config as config_lib
from aelab.train import checkpoints, history
from aelab.train.program import Run, row
from aelab.train.workdir import Workdir

Log = Callable[[str], None]


@dataclasses.dataclass
class Group:
  """A group to train: its runs, their output directories (None: in memory, see ``engine.fit``), where
  the group's checkpoints go, the states and epoch it starts from, and ``ids``, the runs' positions in
  the caller's list (for the summaries); ``shared``, where the groups of a sweep read one stream together, this
  group's slot of ``aelab.data.stream.SharedBatches``."""
  runs: list[Run]
  outs: list[Workdir] | None
  checkpoint_dir: str | None
  states: list[Any | None]
  start_epoch: int
  ids: list[int] = dataclasses.field(default_factory=list)
  shared: Any = None  # a slot of aelab.data.stream.SharedBatches: the stream's chunks shared with other groups


def restore(out: Workdir, abstract: Any, cache: dict | None = None, log: Log = print,
            discard_corrupt: bool = False) -> tuple[Any, int]:
  """``(state, epoch)`` of the run in ``out`` from its newest checkpoint that reads back intact (host
  arrays without the model axis), or ``(None, 0)``. A checkpoint that does not read back (a truncated or
  deleted file, or arrays whose checksums differ from those saved: ``checkpoints.DamagedCheckpoint``) is
  reported in one line through ``log`` and the one before it is tried; with ``discard_corrupt``
  (training, which saves that epoch again) it is deleted.
  ``cache`` (a dict kept across calls) restores a group's stacked checkpoint once for all of its runs.
  Raises ConfigError when the stored arrays do not fit ``abstract`` (the workdir holds a run of another
  model), naming the config fields that changed."""
  cache = {} if cache is None else cache
  for directory, index, epoch in checkpoints.candidates(out.path):
    if (directory, epoch) not in cache:
      try:
        cache[directory, epoch] = _restore_stacked(out, abstract, directory, epoch)
      except config_lib.ConfigError:
        raise
      except Exception as e:  # noqa: BLE001  (orbax and TensorStore raise many kinds for a damaged file)
        reason = ' '.join(str(e).split())[:200]
        what = (f'is damaged ({e})' if isinstance(e, checkpoints.DamagedCheckpoint) else
                f'does not read back ({type(e).__name__}: {reason})')
        log(f'The checkpoint of epoch {epoch} in {directory} {what}; '
            f'{"deleted it, " if discard_corrupt else ""}trying the one before.')
        if discard_corrupt:
          checkpoints.discard(directory, epoch)
        continue
    return row(cache[directory, epoch], index), epoch
  return None, 0


def _restore_stacked(out: Workdir, abstract: Any, directory: str, epoch: int) -> Any:
  """The stacked state of ``epoch`` in ``directory``, after checking its shapes against ``abstract``."""
  ckpt = checkpoints.GroupCheckpoints(directory)
  try:
    stored = ckpt.shapes(epoch)
    out.check_shapes([s[1:] for s in stored], [tuple(x.shape) for x in jax.tree.leaves(abstract)],
                     f'of epoch {epoch}')
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((stored[0][0], *x.shape), x.dtype), abstract)
    return ckpt.restore(epoch, stacked)
  finally:
    ckpt.close()


def checkpoint_dir(groups_dir: str | None, outs: list[Workdir]) -> str:
  """A group of one keeps its checkpoints in its own directory; a larger group under ``groups_dir``, in
  a folder named by a hash of its runs' directories."""
  if len(outs) == 1 or groups_dir is None:
    return os.path.join(outs[0].path, 'checkpoints')
  digest = hashlib.sha1('\n'.join(o.path for o in outs).encode()).hexdigest()[:12]
  return os.path.join(groups_dir, digest, 'checkpoints')


def make_groups(runs: list[Run], outs: list[Workdir], ids: list[int], abstract: Any, groups_dir: str | None,
                log: Log, label: str) -> list[Group]:
  """The groups to train ``runs`` in, each resumed from its newest intact checkpoint: runs stopped at
  the same epoch train together. metrics.jsonl is cut back to the restored epoch (later records are
  trained again). Raises ConfigError as :func:`restore`."""
  stacks: dict = {}
  restored = [restore(out, abstract, stacks, log, discard_corrupt=True) for out in outs]
  by_epoch: dict[int, list[int]] = {}
  for i, (out, (_, epoch)) in enumerate(zip(outs, restored)):
    note = history.truncate(out.path, epoch)
    if note:
      log(note)
    by_epoch.setdefault(epoch, []).append(i)
  groups = []
  for epoch, idx in sorted(by_epoch.items()):
    if epoch:
      log(f'{label}resuming {len(idx)} runs from the checkpoints of epoch {epoch}' if label else
          f'Resuming from the checkpoint of epoch {epoch} in {outs[idx[0]].path}')
    members = [outs[i] for i in idx]
    groups.append(Group([runs[i] for i in idx], members, checkpoint_dir(groups_dir, members),
                        [restored[i][0] for i in idx], epoch, [ids[i] for i in idx]))
  return groups


def survivors(group: Group, alive: np.ndarray, abstract: Any, groups_dir: str | None, log: Log,
              label: str) -> list[Group]:
  """The smaller group(s) that go on without the models that diverged (``alive`` False), restored from
  the checkpoint the loop wrote as it stopped: the diverged models stop using compute."""
  live = np.flatnonzero(alive)
  log(f'{label}{len(alive) - len(live)} diverged model(s) left out: the other {len(live)} go on in a new program')
  return make_groups([group.runs[m] for m in live], [group.outs[m] for m in live], [group.ids[m] for m in live],
                     abstract, groups_dir, log, label)
