"""aelab.train.writers: the metric writers a run's ``log.writers`` picks (jsonl, tensorboard with the HParams view,
mlflow, wandb), offline with the real libraries, and the asynchronous writer's ordering and errors."""
import concurrent.futures
import glob
import importlib.util
import json
import os
import time

import pytest

from aelab import config as config_lib
from aelab.train import engine, writers
from aelab.train.workdir import flatten
from conftest import load_config, small


def _tiny(names: str, epochs: int = 2):
  config = small(load_config('ae'), epochs=epochs)
  config.data.max_train_examples = 256
  config.eval.final_metrics = False
  config.log.writers = names
  return config


def _metrics(path) -> list[dict]:
  with open(os.path.join(path, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _params(path) -> dict[str, str]:
  """The flattened config of the run in ``path`` as tracking params (strings)."""
  with open(os.path.join(path, 'config.json')) as f:
    return {k: str(v) for k, v in writers.hparam_values(flatten(json.load(f))).items()}


def test_log_writers_are_validated_with_a_line_that_says_what_to_do(monkeypatch):
  config = load_config('ae')
  writers.validate(config.log)
  config.log.writers = 'jsonl,csv'
  with pytest.raises(config_lib.ConfigError, match="names 'csv', not a metric writer: choose from jsonl, tensorboard"):
    writers.validate(config.log)
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'mlflow' else find_spec(name, *a))
  config.log.writers = 'jsonl, mlflow'
  with pytest.raises(config_lib.ConfigError, match=r'mlflow, which is not installed: pip install -e "\.\[mlflow\]"'):
    writers.validate(config.log)
  assert 'log.writers' in config_lib.OUTPUT_ONLY_FIELDS  # a resumed run may change its writers


class _Recorder(writers.MetricWriter):
  def __init__(self):
    self.calls = []

  def write_scalars(self, step, scalars):
    if scalars.get('fail'):
      raise OSError('disk full')
    self.calls.append((step, dict(scalars)))


def test_the_async_writer_keeps_order_and_raises_an_error_on_the_next_call():
  inner = _Recorder()
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    writer = writers.AsyncWriter(inner, pool)
    for step in range(50):
      writer.write_scalars(step, {'epoch': step})
    writer.flush()
    assert [s for s, _ in inner.calls] == list(range(50))
    writer.write_scalars(50, {'fail': True})
    writer.write_scalars(51, {'epoch': 51})  # may be queued before the error is seen: then dropped
    with pytest.raises(OSError, match='disk full'):
      writer.flush()
    assert len(inner.calls) == 50


def test_tensorboard_gets_the_config_as_hparams_and_the_reconstructions_as_images(tmp_path):
  config = _tiny('tensorboard')
  config.train.figures_every = 2
  engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  assert not (tmp_path / 'metrics.jsonl').exists()  # only the writers chosen
  (events,) = glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents*'))
  content = open(events, 'rb').read()
  for tag in (b'_hparams_/experiment', b'_hparams_/session_start_info', b'_hparams_/session_end_info',
              b'model.latent_dim', b'optimizer.learning_rate', b'test/recon', b'reconstructions'):
    assert tag in content, tag


def test_mlflow_run_holds_one_value_per_epoch_equal_to_metrics_jsonl_and_the_config_as_params(tmp_path, monkeypatch):
  pytest.importorskip('mlflow')
  from mlflow.tracking import MlflowClient
  monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
  config = _tiny('jsonl,tensorboard,mlflow')
  config.train.figures_every = 2
  engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  stored = json.load(open(tmp_path / 'mlflow_run.json'))
  assert stored['tracking_uri'] == f'sqlite:///{tmp_path}/mlruns/mlflow.db'
  client = MlflowClient(tracking_uri=stored['tracking_uri'])
  run = client.get_run(stored['run_id'])
  assert run.info.status == 'FINISHED'
  assert run.data.params == _params(tmp_path)
  assert client.list_artifacts(stored['run_id'], 'images')  # the reconstructions of epoch 2
  assert glob.glob(str(tmp_path / 'mlruns' / 'artifacts' / '*' / 'artifacts' / 'images' / '*.png'))  # in the workdir
  records = _metrics(tmp_path)
  assert [r['epoch'] for r in records] == [1, 2]
  for key in ('train/loss', 'test/recon', 'test/recon_mse', 'epoch_time_s'):
    logged = client.get_metric_history(stored['run_id'], key)
    assert [(m.step, m.value) for m in logged] == [(r['step'], r[key]) for r in records], key
  # Resumed with more epochs: the same MLflow run goes on, one value per epoch.
  engine.train_and_evaluate(_tiny('jsonl,tensorboard,mlflow', epochs=3), str(tmp_path), log=lambda line: None)
  assert json.load(open(tmp_path / 'mlflow_run.json')) == stored
  logged = client.get_metric_history(stored['run_id'], 'train/loss')
  assert [m.value for m in logged] == [r['train/loss'] for r in _metrics(tmp_path)]
  assert len(logged) == 3


def test_mlflow_after_a_kill_before_the_checkpoint_holds_one_value_per_step(tmp_path, monkeypatch):
  """A run killed after logging epochs it had not checkpointed trains them again on resume; MLflow, which
  cannot delete a value, got each of them twice (get_metric_history: steps 1, 2, 3, 2, 3)."""
  pytest.importorskip('mlflow')
  from mlflow.tracking import MlflowClient
  monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
  first = writers.MlflowWriter(str(tmp_path), 'run')
  for step in (1, 2, 3):
    first.write_scalars(step, {'epoch': step, 'train/loss': 10.0 - step})
  # killed here (no close); the last checkpoint is of step 1, so the rerun logs steps 2, 3 again, then 4
  resumed = writers.MlflowWriter(str(tmp_path), 'run')
  for step in (2, 3, 4):
    resumed.write_scalars(step, {'epoch': step, 'train/loss': 10.0 - step})
  resumed.close()
  client = MlflowClient(tracking_uri=resumed.uri)
  logged = client.get_metric_history(resumed.run_id, 'train/loss')
  assert resumed.run_id == first.run_id
  assert sorted((m.step, m.value) for m in logged) == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)]


def _wandb_records(path: str) -> list[bytes]:
  """The records of a ``.wandb`` transaction log (LevelDB's log format: 32 KiB blocks of chunks, each a
  4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last) after its 7-byte header."""
  data = open(path, 'rb').read()
  assert data[:4] == b':W&B'
  block, pos, records, parts = 32768, 7, [], b''
  while pos + 7 <= len(data):
    left = block - pos % block
    length, kind = int.from_bytes(data[pos + 4:pos + 6], 'little'), data[pos + 6]
    if left < 7 or (length == 0 and kind == 0):
      pos += left  # the block's padding
      continue
    parts += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):
      records.append(parts)
      parts = b''
  return records


def test_wandb_offline_run_folder_holds_the_metrics(tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  from wandb.proto import wandb_internal_pb2
  for name in ('WANDB_MODE', 'WANDB_API_KEY', 'WANDB_DIR'):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))  # no ~/.netrc: not logged in, so offline
  monkeypatch.setenv('WANDB_SILENT', 'true')
  workdir = tmp_path / 'run'
  engine.train_and_evaluate(_tiny('jsonl,wandb'), str(workdir), log=lambda line: None)
  (log_file,) = glob.glob(str(workdir / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
  rows = []
  for raw in _wandb_records(log_file):
    record = wandb_internal_pb2.Record.FromString(raw)
    if record.WhichOneof('record_type') == 'history':
      rows.append({item.key or '/'.join(item.nested_key): json.loads(item.value_json) for item in record.history.item})
  records = _metrics(workdir)
  assert len(rows) == len(records) == 2
  for row, r in zip(rows, records):
    assert row['_step'] == r['step'] and row['epoch'] == r['epoch']
    assert all(row[k] == pytest.approx(r[k], rel=1e-12) for k in r if '/' in k), (row, r)
  # Resumed with more epochs: the same W&B run id (it was a new run per resume), the new epoch only.
  time.sleep(1.1)  # W&B names an offline run's folder by the second it started (and the run id)
  engine.train_and_evaluate(_tiny('jsonl,wandb', epochs=3), str(workdir), log=lambda line: None)
  logs = sorted(glob.glob(str(workdir / 'wandb' / 'offline-run-*' / 'run-*.wandb')))
  assert len(logs) == 2 and {os.path.basename(f) for f in logs} == {os.path.basename(log_file)}
  second = [f for f in logs if f != log_file][0]
  steps = [json.loads(item.value_json) for raw in _wandb_records(second)
           for record in [wandb_internal_pb2.Record.FromString(raw)] if record.WhichOneof('record_type') == 'history'
           for item in record.history.item if (item.key or '/'.join(item.nested_key)) == 'epoch']
  assert steps == [3]
