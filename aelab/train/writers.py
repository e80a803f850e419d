"""Metric writers: one interface for every place a run's metrics go, in the shape of clu's ``MetricWriter``
(``write_scalars(step, scalars)``, ``write_images(step, images)``, ``write_hparams(hparams)``, ``flush()``,
``close()``; the interface is copied, not the dependency, which imports TensorFlow).

``log.writers`` (comma-separated) picks them for a run, each writing under the run's directory:

- ``jsonl``: ``metrics.jsonl``, one JSON object per epoch (``epoch``, ``step``, the metrics).
- ``tensorboard``: ``tensorboard/`` event files (tensorboardX), with the HParams view: the flattened config
  as hyperparameters, so the runs of a sweep (``tensorboard --logdir <sweep workdir>``) compare by them.
- ``mlflow`` (``pip install -e ".[mlflow]"``): an MLflow run in a local store under the run's directory,
  ``mlruns/mlflow.db`` (SQLite: MLflow 3 refuses its plain-file store by default) with its artifacts in
  ``mlruns/artifacts/``, unless ``MLFLOW_TRACKING_URI`` names another store or server; params = the
  flattened config, one value per epoch of each metric, the reconstruction images
  (``mlflow ui --backend-store-uri sqlite:///<run dir>/mlruns/mlflow.db``). A resumed run continues the
  same MLflow run (its id is kept in ``mlflow_run.json``); epochs it logged before a kill that the resumed
  run trains again (those after the last checkpoint) are not logged twice: MLflow keeps their first values,
  the same numbers for the metrics (a resume reproduces them), the first try's for the timings.
- ``wandb`` (``pip install -e ".[wandb]"``): a W&B run in ``wandb/`` under the run's directory, offline
  (``wandb sync`` uploads it later) unless ``WANDB_MODE`` is set or the user logged in (``wandb login``).
  A resumed run continues the same W&B run (its id is kept in ``wandb_run.json``; ``resume='allow'``).

Scalars carry the ``epoch`` (written to metrics.jsonl; the other writers index by ``step``). Every writer
opens its library on first use, so an unchosen one costs nothing and a chosen one imports on the writers'
background thread (:class:`AsyncWriter`), never on the training path.
"""
import concurrent.futures
import importlib.util
import json
import netrc
import os
import pathlib
import sys
import time
from typing import Any, Callable, Mapping

import numpy as np

from aelab.errors import ConfigError
from aelab.train import files, history

NAMES = ('jsonl', 'tensorboard', 'mlflow', 'wandb')
EXTRAS = ('mlflow', 'wandb')  # optional: setup.cfg extras of these names
INDEX = ('epoch', 'step')  # scalars that index a record rather than measure it


class MetricWriter:
  """The interface (clu's ``MetricWriter``); every method does nothing here."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes scalar metrics (``{'train/loss': 0.1, ...}``, with ``epoch``) at training step ``step``."""

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Writes images (``H x W`` or ``H x W x C``, float in [0, 1]) at ``step``."""

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Writes the run's hyperparameters (the flattened config: ``{'model.latent_dim': 32, ...}``)."""

  def flush(self) -> None:
    """Makes everything written so far durable."""

  def close(self) -> None:
    """Flushes and releases the writer's files."""


def parse(names: str) -> list[str]:
  """``'jsonl, tensorboard'`` -> ``['jsonl', 'tensorboard']`` (blanks and empty entries dropped)."""
  return [n.strip() for n in names.split(',') if n.strip()]


def validate(log_config: Any) -> None:
  """Checks ``config.log``: every name in ``log.writers`` is a writer, and an optional one is installed.
  Raises ConfigError saying what to change or to install."""
  for name in parse(log_config.writers):
    if name not in NAMES:
      raise ConfigError(f'log.writers={log_config.writers!r} names {name!r}, not a metric writer: choose from '
                        f'{", ".join(NAMES)} (comma-separated).')
    if name in EXTRAS and importlib.util.find_spec(name) is None:
      raise ConfigError(f'log.writers names {name}, which is not installed: pip install -e ".[{name}]" (or pip '
                        f'install {name}), or leave {name} out of log.writers.')


def hparam_values(hparams: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
  """Hyperparameters as the types tracking libraries take: numbers, bools and strings as they are,
  anything else (tuples, None) as its ``str``."""
  return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}


def measured(scalars: Mapping[str, Any]) -> dict[str, float]:
  """The scalars that are metrics (not ``epoch`` / ``step``), as floats."""
  return {k: float(v) for k, v in scalars.items() if k not in INDEX and np.isscalar(v)}


class JsonlWriter(MetricWriter):
  """``<run_dir>/metrics.jsonl``: one line ``{"epoch": e, "step": s, metrics...}`` per call."""

  def __init__(self, run_dir: str):
    self.run_dir = run_dir

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    history.append(self.run_dir, {'epoch': scalars.get('epoch'), 'step': step,
                                  **{k: v for k, v in scalars.items() if k != 'epoch'}})


def _import_tensorboardx():
  """tensorboardX, imported on first use. Its writer imports PyTorch, where installed, only to recognise
  torch tensors (1.5 s here); aelab passes floats, so torch is hidden during that import unless the
  process already imported it."""
  hide = 'torch' not in sys.modules
  if hide:
    sys.modules['torch'] = None  # `import torch` raises ImportError, which tensorboardX expects
  try:
    import tensorboardX  # noqa: PLC0415
    import tensorboardX.summary  # noqa: PLC0415, F401
  finally:
    if hide:
      del sys.modules['torch']
  return tensorboardX


class TensorboardWriter(MetricWriter):
  """``<run_dir>/tensorboard/`` event files. The hyperparameters go to TensorBoard's HParams view with the
  first scalars (whose names become the view's metric columns) and the session ends on :meth:`close`."""

  def __init__(self, run_dir: str):
    self.logdir = os.path.join(run_dir, 'tensorboard')
    self._writer = self._hparams = self._session_end = None

  @property
  def writer(self):
    if self._writer is None:
      self._writer = _import_tensorboardx().SummaryWriter(self.logdir)
    return self._writer

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._hparams = hparam_values(hparams)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    values = measured(scalars)
    if self._hparams is not None:
      experiment, session_start, self._session_end = _import_tensorboardx().summary.hparams(
          self._hparams, {name: 0.0 for name in values})
      self.writer.file_writer.add_summary(experiment)
      self.writer.file_writer.add_summary(session_start)
      self._hparams = None
    for name, value in values.items():
      self.writer.add_scalar(name, value, step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    for name, image in images.items():
      image = np.asarray(image)
      self.writer.add_image(name, image if image.ndim == 3 else image[..., None], step, dataformats='HWC')

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      if self._session_end is not None:
        self._writer.file_writer.add_summary(self._session_end)
      self._writer.close()


class MlflowWriter(MetricWriter):
  """An MLflow run (see the module docstring), through ``mlflow.tracking.MlflowClient`` (no global state,
  so the runs of a sweep write side by side). Its id is kept in ``<run_dir>/mlflow_run.json``."""

  def __init__(self, run_dir: str, name: str):
    self.run_dir, self.name = run_dir, name or os.path.basename(run_dir)
    store = os.path.join(run_dir, 'mlruns')
    self.uri = os.environ.get('MLFLOW_TRACKING_URI') or f'sqlite:///{os.path.join(store, "mlflow.db")}'
    self.artifacts = None if os.environ.get('MLFLOW_TRACKING_URI') else pathlib.Path(store, 'artifacts').as_uri()
    if self.artifacts:
      os.makedirs(store, exist_ok=True)
    self._client = self.run_id = None
    self._new, self._logged_up_to = False, 0

  @property
  def client(self):
    if self._client is None:
      from mlflow.tracking import MlflowClient  # noqa: PLC0415  (an optional extra, slow to import)
      self._client = MlflowClient(tracking_uri=self.uri)
      self.run_id, self._new = self._run()
    return self._client

  def _run(self) -> tuple[str, bool]:
    """``(run id, created)``: the run recorded in mlflow_run.json for this tracking URI, else a new one."""
    path = os.path.join(self.run_dir, 'mlflow_run.json')
    if os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      if stored.get('tracking_uri') == self.uri:
        self._client.update_run(stored['run_id'], status='RUNNING')
        logged = self._client.get_run(stored['run_id']).data.metrics
        self._logged_up_to = max((m.step for key in logged for m in self._client.get_metric_history(
            stored['run_id'], key)), default=0)
        return stored['run_id'], False
    experiment = self._client.get_experiment_by_name('aelab')
    experiment_id = (experiment.experiment_id if experiment else
                     self._client.create_experiment('aelab', artifact_location=self.artifacts))
    run_id = self._client.create_run(experiment_id, run_name=self.name).info.run_id
    files.write_json(path, {'tracking_uri': self.uri, 'run_id': run_id})
    return run_id, True

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    from mlflow.entities import Param  # noqa: PLC0415
    client = self.client
    if not self._new:
      return  # a resumed run: its params are logged (MLflow refuses to change one)
    params = [Param(k, str(v)) for k, v in hparam_values(hparams).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
      client.log_batch(self.run_id, params=params[i:i + 100])

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    from mlflow.entities import Metric  # noqa: PLC0415
    client, now = self.client, int(time.time() * 1000)
    if step <= self._logged_up_to:
      return  # logged before a kill, trained again from the last checkpoint: one value per step
    client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in measured(scalars).items()])

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    for name, image in images.items():
      self.client.log_image(self.run_id, np.clip(np.asarray(image), 0.0, 1.0), key=name, step=step)

  def close(self) -> None:
    if self._client is not None:
      self._client.set_terminated(self.run_id)


def _wandb_logged_in() -> bool:
  """Whether the user gave W&B an API key (``WANDB_API_KEY``, or ``wandb login``'s entry in ~/.netrc)."""
  if os.environ.get('WANDB_API_KEY'):
    return True
  try:
    return netrc.netrc().authenticators('api.wandb.ai') is not None
  except (OSError, netrc.NetrcParseError):
    return False


class WandbWriter(MetricWriter):
  """A W&B run in ``<run_dir>/wandb/`` (see the module docstring); the config is its ``config``."""

  def __init__(self, run_dir: str, name: str):
    self.run_dir, self.name = run_dir, name or os.path.basename(run_dir)
    self._run, self._hparams = None, {}

  @property
  def run(self):
    if self._run is None:
      import wandb  # noqa: PLC0415  (an optional extra, slow to import)
      mode = os.environ.get('WANDB_MODE') or ('online' if _wandb_logged_in() else 'offline')
      path = os.path.join(self.run_dir, 'wandb_run.json')
      stored = {}
      if os.path.exists(path):
        with open(path) as f:
          stored = json.load(f)
      self._run = wandb.init(project=os.environ.get('WANDB_PROJECT', 'aelab'), name=self.name, dir=self.run_dir,
                             mode=mode, config=self._hparams, reinit='create_new', id=stored.get('run_id'),
                             resume='allow' if stored else None)
      if not stored:
        files.write_json(path, {'run_id': self._run.id})
    return self._run

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._hparams = hparam_values(hparams)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self.run.log({**measured(scalars), 'epoch': scalars.get('epoch')}, step=step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    import wandb  # noqa: PLC0415
    self.run.log({k: wandb.Image(np.asarray(v)) for k, v in images.items()}, step=step)

  def close(self) -> None:
    if self._run is not None:
      self._run.finish()


class MultiWriter(MetricWriter):
  """Writes to each of ``writers`` in turn."""

  def __init__(self, writers: list[MetricWriter]):
    self.writers = writers

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    for w in self.writers:
      w.write_images(step, images)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write_hparams(hparams)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


class AsyncWriter(MetricWriter):
  """Runs a writer's calls in order on a background thread (``pool``, one worker, may be shared by the
  writers of a group), so writing never blocks the epoch. The first error a call raises is raised again
  by the next call made here (:meth:`flush` included), and the calls after it are dropped."""

  def __init__(self, writer: MetricWriter, pool: concurrent.futures.ThreadPoolExecutor):
    self.writer, self.pool = writer, pool
    self._last: concurrent.futures.Future | None = None
    self._error: BaseException | None = None

  def _call(self, fn: Callable, *args: Any) -> None:
    if self._error is None:
      try:
        fn(*args)
      except BaseException as e:  # noqa: BLE001  (raised again on the caller's thread)
        self._error = e

  def _submit(self, fn: Callable, *args: Any) -> None:
    self._raise()
    self._last = self.pool.submit(self._call, fn, *args)

  def _raise(self) -> None:
    if self._error is not None:
      raise self._error

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._submit(self.writer.write_scalars, step, dict(scalars))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    self._submit(self.writer.write_images, step, dict(images))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._submit(self.writer.write_hparams, dict(hparams))

  def wait(self) -> None:
    """Blocks until every call made so far ran; raises the first error of one."""
    if self._last is not None:
      self._last.result()
    self._raise()

  def flush(self) -> None:
    self._submit(self.writer.flush)
    self.wait()

  def close(self) -> None:
    self._submit(self.writer.close)
    self.wait()


class MemoryWriter(MetricWriter):
  """Keeps the scalars in ``records`` (a list of dicts), for training without a workdir (``engine.fit``)."""

  def __init__(self):
    self.records: list[dict[str, Any]] = []

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self.records.append(dict(scalars))


def create(names: str, run_dir: str, run_name: str = '') -> MultiWriter:
  """The writers ``names`` (``log.writers``) of the run in ``run_dir``. Raises ConfigError as :func:`validate`."""
  makers = {'jsonl': lambda: JsonlWriter(run_dir), 'tensorboard': lambda: TensorboardWriter(run_dir),
            'mlflow': lambda: MlflowWriter(run_dir, run_name), 'wandb': lambda: WandbWriter(run_dir, run_name)}
  chosen = parse(names)
  unknown = [n for n in chosen if n not in makers]
  if unknown:
    raise ConfigError(f'log.writers={names!r} names {unknown[0]!r}, not a metric writer: choose from '
                      f'{", ".join(NAMES)} (comma-separated).')
  return MultiWriter([makers[n]() for n in chosen])
