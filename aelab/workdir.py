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


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in metrics.items()}


class Workdir:
  """Writers for one run's directory. Create with the resolved config; it is written as config.json."""

  def __init__(self, path: str, config: ml_collections.ConfigDict, keep_checkpoints: int = 2):
    self.path = os.path.abspath(path)
    os.makedirs(os.path.join(self.path, 'figures'), exist_ok=True)
    with open(os.path.join(self.path, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoints, create=True)
    self.checkpoints = ocp.CheckpointManager(os.path.join(self.path, 'checkpoints'), options=options)
    self.tensorboard = tensorboardX.SummaryWriter(os.path.join(self.path, 'tensorboard'))

  def figure_path(self, name: str) -> str:
    return os.path.join(self.path, 'figures', name)

  def restore(self, abstract_state: Any) -> tuple[Any, int]:
    """Returns ``(state, epoch)`` from the latest checkpoint, or ``(None, 0)`` when there is none."""
    epoch = self.checkpoints.latest_step()
    if epoch is None:
      return None, 0
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    state = self.checkpoints.restore(epoch, args=ocp.args.StandardRestore(abstract))
    self._truncate_metrics(epoch)
    return state, epoch

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
