"""What a run leaves in its workdir: config.json, metrics.jsonl, TensorBoard events, orbax checkpoints,
figures/ and summary.json. Checkpointing is orbax's; TensorBoard writing is tensorboardX's."""
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorboardX

from aelab.config import ConfigError


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in metrics.items()}


def _flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    flat.update(_flatten(value, f'{prefix}{key}.') if isinstance(value, dict) else {f'{prefix}{key}': value})
  return flat


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> str:
  """``'model.hidden: [128] -> [64], ...'`` for the config fields that differ."""
  old, new = _flatten(old), _flatten(new)
  return ', '.join(f'{k}: {old.get(k)} -> {new.get(k)}' for k in sorted(old.keys() | new.keys())
                   if old.get(k) != new.get(k))


class Workdir:
  """Writers for one run's directory. Create with the resolved config; it is written as config.json."""

  def __init__(self, path: str, config: ml_collections.ConfigDict, keep_checkpoints: int = 2):
    self.path = os.path.abspath(path)
    os.makedirs(os.path.join(self.path, 'figures'), exist_ok=True)
    self.config = json.loads(config.to_json_best_effort())
    options = ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoints, create=True)
    self.checkpoints = ocp.CheckpointManager(os.path.join(self.path, 'checkpoints'), options=options,
                                             item_handlers=ocp.StandardCheckpointHandler())
    self.tensorboard = tensorboardX.SummaryWriter(os.path.join(self.path, 'tensorboard'))

  def figure_path(self, name: str) -> str:
    return os.path.join(self.path, 'figures', name)

  def restore(self, abstract_state: Any) -> tuple[Any, int]:
    """Returns ``(state, epoch)`` from the latest checkpoint, or ``(None, 0)`` when there is none, and
    writes config.json. Raises ConfigError when the checkpoint's arrays do not fit ``abstract_state``
    (the workdir holds a run of another model), naming the config fields that changed."""
    epoch = self.checkpoints.latest_step()
    state = None
    if epoch is not None:
      self._check_fits(epoch, abstract_state)
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
      state = self.checkpoints.restore(epoch, args=ocp.args.StandardRestore(abstract))
      self._truncate_metrics(epoch)
    with open(os.path.join(self.path, 'config.json'), 'w') as f:
      json.dump(self.config, f, indent=2, sort_keys=True)
    return state, epoch or 0

  def _check_fits(self, epoch: int, abstract_state: Any) -> None:
    stored = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(self.checkpoints.item_metadata(epoch)))
    wanted = sorted(tuple(leaf.shape) for leaf in jax.tree.leaves(abstract_state))
    if stored == wanted:
      return
    config_path = os.path.join(self.path, 'config.json')
    previous = json.load(open(config_path)) if os.path.exists(config_path) else {}
    raise ConfigError(
        f'The checkpoint of epoch {epoch} in {self.path} holds arrays of other shapes than this config '
        f'builds. Fields changed since the run that wrote it: {_changed_fields(previous, self.config)}. '
        'Use a new --workdir, or delete its checkpoints/ to start over.')

  def save(self, epoch: int, state: Any) -> None:
    """Checkpoints ``state`` as ``epoch`` (numbered from 1) and waits until it is on disk."""
    self.checkpoints.save(epoch, args=ocp.args.StandardSave(state))
    self.checkpoints.wait_until_finished()

  def write_metrics(self, step: int, epoch: int, metrics: dict[str, Any]) -> None:
    """Appends one line to metrics.jsonl and writes the scalars to TensorBoard."""
    record = {'epoch': epoch, 'step': step, **_jsonable(metrics)}
    with open(os.path.join(self.path, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps(record) + '\n')
    for name, value in record.items():
      if name not in ('epoch', 'step') and np.isscalar(value):
        self.tensorboard.add_scalar(name, value, step)
    self.tensorboard.flush()

  def read_metrics(self) -> list[dict[str, Any]]:
    path = os.path.join(self.path, 'metrics.jsonl')
    if not os.path.exists(path):
      return []
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def _truncate_metrics(self, epoch: int) -> None:
    """Drops records past ``epoch`` (left by a run that stopped after its last checkpoint)."""
    kept = [r for r in self.read_metrics() if r['epoch'] <= epoch]
    with open(os.path.join(self.path, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in kept)

  def write_summary(self, summary: dict[str, Any]) -> None:
    with open(os.path.join(self.path, 'summary.json'), 'w') as f:
      json.dump(_jsonable(summary), f, indent=2, sort_keys=True)

  def close(self) -> None:
    self.checkpoints.close()
    self.tensorboard.close()
