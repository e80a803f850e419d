"""A run's directory: its paths (``figures/``, config.json), the identity of its config, and its lock.

A workdir is one run: :meth:`Workdir.check_same_run` refuses a config that would change its result
(``config.OUTPUT_ONLY_FIELDS`` may differ; ``train.num_epochs`` may rise), :meth:`Workdir.locked` keeps a
second process out, and :meth:`Workdir.check_shapes` names the fields that changed when a checkpoint does
not fit. What a run writes there: metrics.jsonl and summary.json (``aelab/train/history.py``), the metric
writers' files (``aelab/train/writers.py``: tensorboard/, mlruns/, wandb/), figures/ and checkpoints
(checkpoint.json points to them, ``aelab/train/checkpoints.py``).
"""
import contextlib
import fcntl
import json
import os
from typing import Any, Callable, Iterator

import ml_collections

from aelab import config as config_lib
from aelab.config import ConfigError
from aelab.data import fingerprints
from aelab.train import files, history

LOCK = '.lock'
FINGERPRINT = 'data_fingerprint'  # config.json's key of the data fingerprint (``aelab.data.fingerprint``)


def split_fingerprint(stored: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """``(config values, data fingerprint or None)`` of a config.json's contents."""
  if not isinstance(stored, dict) or FINGERPRINT not in stored:
    return stored, None
  return {k: v for k, v in stored.items() if k != FINGERPRINT}, stored[FINGERPRINT]


class WorkdirBusy(ConfigError):
  """Another live process holds the workdir's lock file; the message names its PID."""


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
  for field in ('data.path', 'data.test_path'):  # a run of an aelab that stored relative paths
    if isinstance(old.get(field), str) and old[field] and isinstance(new.get(field), str) and os.path.isabs(new[field]):
      old[field] = os.path.abspath(os.path.expanduser(old[field]))
  return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
          if old.get(k) != new.get(k) and k not in config_lib.OUTPUT_ONLY_FIELDS}


def check_path(path: str | None) -> str:
  """Returns ``path`` if it may be a run's directory: not empty, not the current directory, not the
  repository that holds aelab (or a folder above it), not a regular file or a dangling link. Raises
  ConfigError saying which, in one line."""
  if not path or not str(path).strip():
    raise ConfigError('--workdir is empty: name a directory for the run\'s outputs, e.g. --workdir=runs/ae.')
  full = os.path.realpath(path)
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # holds aelab/
  if full == os.path.realpath(os.getcwd()):
    raise ConfigError(f'--workdir={path} is the current directory: a run writes config.json, checkpoints/ '
                      'and more there; name a directory of its own, e.g. --workdir=runs/ae.')
  if os.path.exists(os.path.join(package_root, 'setup.cfg')) and (
      package_root == full or package_root.startswith(full.rstrip(os.sep) + os.sep)):
    raise ConfigError(f'--workdir={path} is the aelab repository {package_root} (or a folder above it); name '
                      'a directory of its own, e.g. --workdir=runs/ae.')
  if os.path.islink(path) and not os.path.exists(path):
    raise ConfigError(f'--workdir={path} is a link to {os.readlink(path)}, which does not exist: remove the '
                      'link or name another directory.')
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f'--workdir={path} is a file, not a directory: name a directory for the run.')
  return path


class Workdir:
  """One run's directory (made if missing). Create with the resolved config (written as config.json by
  :meth:`write_config`)."""

  def __init__(self, path: str, config: ml_collections.ConfigDict, data_fingerprint: dict[str, Any] | None = None):
    self.path = os.path.abspath(path)
    os.makedirs(self.path, exist_ok=True)
    self.config = json.loads(config.to_json_best_effort())
    self.data_fingerprint = data_fingerprint  # of the data this config reads (``data.fingerprint``), or None

  def figure_path(self, name: str) -> str:
    """``<workdir>/figures/<name>`` (the folder is made on first use)."""
    os.makedirs(os.path.join(self.path, 'figures'), exist_ok=True)
    return os.path.join(self.path, 'figures', name)

  def _stored(self) -> dict[str, Any]:
    """The workdir's config.json as stored (``{}`` without one). Raises ConfigError when it is not JSON."""
    path = os.path.join(self.path, 'config.json')
    if not os.path.exists(path):
      return {}
    try:
      with open(path) as f:
        return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ConfigError(f'{path} is not valid JSON ({e}), so this workdir\'s run is unknown: use a new '
                        '--workdir, or restore that file.') from None

  def previous_config(self) -> dict[str, Any]:
    """The config of the workdir's config.json (``{}`` without one; without its data fingerprint).
    Raises ConfigError when it is not JSON."""
    return split_fingerprint(self._stored())[0]

  def check_same_data(self) -> None:
    """Raises ConfigError naming what changed when the data this config reads (``data_fingerprint``) is not
    the data of the workdir's run (the fingerprint in its config.json; runs of an aelab that stored none
    are not checked)."""
    previous = split_fingerprint(self._stored())[1]
    if previous is None or self.data_fingerprint is None:
      return
    changed = fingerprints.changes(previous, self.data_fingerprint)
    if changed:
      raise ConfigError(f'{self.path} holds a run trained on other data, and a workdir is one run on one dataset. '
                        f'Changed since: {"; ".join(changed)}. Use a new --workdir for this data, or restore the '
                        'data the run trained on.')

  def check_same_run(self, log: Callable[[str], None]) -> None:
    """Compares this config with the workdir's config.json (if any) before anything is written.

    Raises ConfigError listing the changed fields (``old -> new``) when one changes the result (every
    field but ``config.OUTPUT_ONLY_FIELDS``), or when ``train.num_epochs`` is lower than the run's, or
    naming what changed in the data when it is not the data the run trained on (:meth:`check_same_data`). A
    higher ``train.num_epochs`` continues the run, and says so through ``log``.
    """
    previous = self.previous_config()
    if not previous:
      return
    self.check_same_data()  # before any "continues training"
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
    """Writes the resolved config as ``<workdir>/config.json`` (atomically), with the data fingerprint
    under :data:`FINGERPRINT` when known."""
    stored = self.config if self.data_fingerprint is None else {**self.config, FINGERPRINT: self.data_fingerprint}
    files.write_json(os.path.join(self.path, 'config.json'), stored)

  def read_metrics(self) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (``history.read``)."""
    return history.read(self.path)

  def write_summary(self, summary: dict[str, Any]) -> None:
    """Writes summary.json atomically (``history.write_summary``)."""
    history.write_summary(self.path, summary)

  def read_summary(self, log: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """summary.json or None (``history.read_summary``: a torn one is reported through ``log``)."""
    return history.read_summary(self.path, log)
