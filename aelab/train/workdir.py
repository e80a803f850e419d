"""What a run leaves in its directory: config.json, metrics.jsonl, TensorBoard events, figures/,
summary.json, and checkpoint.json (the pointer to its checkpoint, see ``aelab/checkpoints.py``).
TensorBoard writing is tensorboardX's.

A workdir is one run: :meth:`Workdir.check_same_run` refuses a config that would change its result
(``config.OUTPUT_ONLY_FIELDS`` may differ; ``train.num_epochs`` may rise), :meth:`Workdir.locked` keeps a
second process out, and every file rewritten in place is replaced atomically (:func:`write_json`,
:meth:`Workdir.truncate_metrics`); a line of metrics.jsonl torn by a kill is dropped on the next start.
"""
import contextlib
import fcntl
import json
import os
import sys
from typing import Any, Callable, Iterator

import ml_collections
import numpy as np

from aelab import config as config_lib
from aelab.config import ConfigError

LOCK = '.lock'


class WorkdirBusy(ConfigError):
  """Another live process holds the workdir's lock file; the message names its PID."""


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


def _resolved(values: dict[str, Any]) -> dict[str, Any]:
  """A config.json's values with the defaults of fields it lacks (``config.from_dict``), flattened."""
  try:
    values = json.loads(config_lib.from_dict(values).to_json_best_effort())
  except (TypeError, ValueError, AttributeError, KeyError):
    pass  # compared as stored
  return flatten(values)


def result_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """``{field: (old value, new value)}`` for the config fields that differ between two config.json
  dicts, leaving out ``config.OUTPUT_ONLY_FIELDS`` (fields missing in ``old`` count as their defaults)."""
  old, new = _resolved(old), _resolved(new)
  return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k) and k not in config_lib.OUTPUT_ONLY_FIELDS}


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (a temporary file beside it, then ``os.replace``)."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, value: Any) -> None:
  """Writes ``value`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
  os.replace(tmp, path)


def _ranges(epochs: list[int]) -> str:
  """``[1, 2, 3, 5]`` -> ``'1-3, 5'``."""
  parts, start = [], epochs[0]
  for prev, cur in zip(epochs, epochs[1:] + [None]):
    if cur is None or cur != prev + 1:
      parts.append(f'{start}-{prev}' if prev > start else f'{start}')
      start = cur
  return ', '.join(parts)


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
    """The workdir's config.json (``{}`` without one). Raises ConfigError when it is not JSON."""
    path = os.path.join(self.path, 'config.json')
    if not os.path.exists(path):
      return {}
    try:
      with open(path) as f:
        return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ConfigError(f'{path} is not valid JSON ({e}), so this workdir\'s run is unknown: use a new '
                        '--workdir, or restore that file.') from None

  def check_same_run(self, log: Callable[[str], None]) -> None:
    """Compares this config with the workdir's config.json (if any) before anything is written.

    Raises ConfigError listing the changed fields (``old -> new``) when one changes the result (every
    field but ``config.OUTPUT_ONLY_FIELDS``), or when ``train.num_epochs`` is lower than the run's. A
    higher ``train.num_epochs`` continues the run, and says so through ``log``.
    """
    previous = self.previous_config()
    if not previous:
      return
    changes = result_changes(previous, self.config)
    epochs = changes.pop('train.num_epochs', None)
    if epochs is not None and not epochs[1] < epochs[0]:
      schedule = self.config['optimizer']['schedule']
      note = (f' (optimizer.schedule={schedule} now spans {epochs[1]} epochs, so the remaining steps follow '
              'another curve than the first run\'s)' if schedule != 'constant' else '')
      log(f'train.num_epochs raised from {epochs[0]} to {epochs[1]}: {self.path} continues training{note}.')
    elif epochs is not None:
      changes['train.num_epochs'] = epochs
    if changes:
      listed = ', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changes.items())
      raise ConfigError(
          f'{self.path} holds a run of another config, and a workdir is one run. Changed: {listed}. Use a new '
          '--workdir for this config, or rerun with the values in its config.json (train.num_epochs may be '
          'raised to train longer; figure, checkpoint and evaluation-sample fields may differ).')

  @contextlib.contextmanager
  def locked(self) -> Iterator[None]:
    """Holds ``<workdir>/.lock`` (``fcntl.flock``, which the OS releases when the process ends however it
    ends, so a stale lock file is simply taken over) with this process's PID written in it.
    Raises WorkdirBusy naming the PID of a live process that holds it."""
    path = os.path.join(self.path, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or 'unknown'
        raise WorkdirBusy(f'{self.path} is in use by process {holder} (lock file {path}): wait for it to '
                          'finish or stop it, or use another --workdir.') from None
      os.ftruncate(fd, 0)
      os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
      yield
    finally:
      os.close(fd)  # releases the lock

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

  def _metric_lines(self) -> tuple[list[dict[str, Any]], int]:
    """``(records, number of lines that are not a JSON record)`` of metrics.jsonl (``([], 0)`` without it)."""
    path = os.path.join(self.path, 'metrics.jsonl')
    if not os.path.exists(path):
      return [], 0
    records, bad = [], 0
    with open(path, errors='replace') as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          bad += bool(line.strip())
          continue
        if isinstance(record, dict) and isinstance(record.get('epoch'), int):
          records.append(record)
        else:
          bad += 1
    return records, bad

  def read_metrics(self) -> list[dict[str, Any]]:
    """The records of metrics.jsonl, in order; a line torn by a kill (not JSON) is skipped."""
    return self._metric_lines()[0]

  def truncate_metrics(self, epoch: int) -> str | None:
    """Keeps the records of epochs ``1..epoch`` (those of later epochs, written after the last checkpoint,
    and lines torn by a kill are dropped), replacing metrics.jsonl atomically. Returns a line to report
    when lines were torn or the history of epochs ``1..epoch`` is missing, else None."""
    path = os.path.join(self.path, 'metrics.jsonl')
    records, bad = self._metric_lines()
    kept = [r for r in records if r['epoch'] <= epoch]
    if bad or len(kept) != len(records):
      write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
    notes = [f'dropped {bad} torn line(s)'] if bad else []
    missing = sorted(set(range(1, epoch + 1)) - {r['epoch'] for r in kept})
    if missing:
      notes.append(f'no metrics of epoch(s) {_ranges(missing)} (lost; training goes on from the checkpoint)')
    return f'{path}: {"; ".join(notes)}.' if notes else None

  def write_summary(self, summary: dict[str, Any]) -> None:
    write_json(os.path.join(self.path, 'summary.json'), _jsonable(summary))

  def read_summary(self, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """summary.json, or None without one. One that is not JSON (torn) is reported through ``log`` and
    read as None (the run's last checkpoint then writes it again); without ``log`` it raises ConfigError."""
    path = os.path.join(self.path, 'summary.json')
    if not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        summary = json.load(f)
      if not isinstance(summary, dict):
        raise ValueError('not a JSON object')
      return summary
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
      message = f'{path} is unreadable ({e})'
      if log is None:
        raise ConfigError(f'{message}: delete it and rerun the training command to write it again.') from None
      log(f'{message}; it is written again from the run\'s last checkpoint.')
      return None

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
