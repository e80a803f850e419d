"""What a run leaves in its directory: config.json, metrics.jsonl, TensorBoard events, figures/,
summary.json, and checkpoint.json (the pointer to its checkpoint, see ``aelab/checkpoints.py``).
TensorBoard writing is tensorboardX's."""
import json
import os
import sys
from typing import Any

import ml_collections
import numpy as np

from aelab.config import ConfigError


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
  return {k: (v.item() if hasattr(v, 'item') else v) for k, v in metrics.items()}


def flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """``{'model.hidden': ..., ...}``: a nested dict's leaves under dotted keys."""
  flat = {}
  for key, value in tree.items():
    flat.update(flatten(value, f'{prefix}{key}.') if isinstance(value, dict) else {f'{prefix}{key}': value})
  return flat


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> str:
  """``'model.hidden: [128] -> [64], ...'`` for the config fields that differ."""
  old, new = flatten(old), flatten(new)
  return ', '.join(f'{k}: {old.get(k)} -> {new.get(k)}' for k in sorted(old.keys() | new.keys())
                   if old.get(k) != new.get(k))


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
  os.replace(tmp, path)


def _import_tensorboardx():
  """tensorboardX, imported on first use. Its writer imports PyTorch, where installed, only to recognise
  torch tensors (1.5 s here); aelab passes floats, so torch is hidden during that import unless the
  process already imported it."""
  hide = 'torch' not in sys.modules
  if hide:
    sys.modules['torch'] = None  # `import torch` raises ImportError, which tensorboardX expects
  try:
    import tensorboardX  # noqa: PLC0415
  finally:
    if hide:
      del sys.modules['torch']
  return tensorboardX


class Workdir:
  """Writers for one run's directory. Create with the resolved config (written as config.json by
  :meth:`write_config`)."""

  def __init__(self, path: str, config: ml_collections.ConfigDict):
    self.path = os.path.abspath(path)
    os.makedirs(self.path, exist_ok=True)
    self.config = json.loads(config.to_json_best_effort())
    self._tensorboard = None

  def figure_path(self, name: str) -> str:
    """``<workdir>/figures/<name>`` (the folder is made on first use)."""
    os.makedirs(os.path.join(self.path, 'figures'), exist_ok=True)
    return os.path.join(self.path, 'figures', name)

  def previous_config(self) -> dict[str, Any]:
    path = os.path.join(self.path, 'config.json')
    if not os.path.exists(path):
      return {}
    with open(path) as f:
      return json.load(f)

  def check_shapes(self, stored: list[tuple[int, ...]], wanted: list[tuple[int, ...]], where: str) -> None:
    """Raises ConfigError when the checkpoint's array shapes (without the model axis) are not this
    config's, naming the config fields that changed since the run that wrote it."""
    if sorted(stored) == sorted(wanted):
      return
    raise ConfigError(
        f'The checkpoint {where} of {self.path} holds arrays of other shapes than this config builds. Fields '
        f'changed since the run that wrote it: {changed_fields(self.previous_config(), self.config)}. '
        'Use a new --workdir, or delete its checkpoint.json and checkpoints/ to start over.')

  def write_config(self) -> None:
    write_json(os.path.join(self.path, 'config.json'), self.config)

  @property
  def tensorboard(self):
    if self._tensorboard is None:
      self._tensorboard = _import_tensorboardx().SummaryWriter(os.path.join(self.path, 'tensorboard'))
    return self._tensorboard

  def write_metrics(self, step: int, epoch: int, metrics: dict[str, Any], tensorboard: bool = True) -> None:
    """Appends one line to metrics.jsonl and, with ``tensorboard``, writes the scalars to TensorBoard
    (:meth:`write_tensorboard`; the engine calls that on its background thread instead)."""
    record = {'epoch': epoch, 'step': step, **_jsonable(metrics)}
    with open(os.path.join(self.path, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps(record) + '\n')
    if tensorboard:
      self.write_tensorboard(step, record)

  def write_tensorboard(self, step: int, metrics: dict[str, Any]) -> None:
    """Writes the scalar metrics to TensorBoard at ``step`` (flushed on close)."""
    for name, value in metrics.items():
      if name not in ('epoch', 'step') and np.isscalar(value):
        self.tensorboard.add_scalar(name, value, step)

  def read_metrics(self) -> list[dict[str, Any]]:
    path = os.path.join(self.path, 'metrics.jsonl')
    if not os.path.exists(path):
      return []
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]

  def truncate_metrics(self, epoch: int) -> None:
    """Drops records past ``epoch`` (left by a run that stopped after its last checkpoint)."""
    records = self.read_metrics()
    kept = [r for r in records if r['epoch'] <= epoch]
    if len(kept) == len(records):
      return
    with open(os.path.join(self.path, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in kept)

  def write_summary(self, summary: dict[str, Any]) -> None:
    write_json(os.path.join(self.path, 'summary.json'), _jsonable(summary))

  def read_summary(self) -> dict[str, Any] | None:
    path = os.path.join(self.path, 'summary.json')
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
