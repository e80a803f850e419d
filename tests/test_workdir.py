"""A run's directory: metrics truncated to a checkpoint, atomic JSON, TensorBoard without PyTorch."""
import json
import os
import sys

from aelab.train import workdir
from conftest import load_config


def test_metrics_are_truncated_to_the_restored_epoch_and_summaries_replace_atomically(tmp_path):
  out = workdir.Workdir(str(tmp_path), load_config('ae'))
  for epoch in (1, 2, 3):
    out.write_metrics(epoch * 10, epoch, {'train/loss': 1.0 / epoch}, tensorboard=False)
  out.truncate_metrics(2)
  assert [r['epoch'] for r in out.read_metrics()] == [1, 2]
  out.write_summary({'epochs': 2, 'test/recon': 0.5})
  out.write_summary({'epochs': 3, 'test/recon': 0.25})
  assert out.read_summary() == {'epochs': 3, 'test/recon': 0.25}
  assert sorted(os.listdir(tmp_path)) == ['metrics.jsonl', 'summary.json']  # no temporary files left
  out.write_config()
  assert json.load(open(tmp_path / 'config.json'))['model']['name'] == 'ae'
  out.close()


def test_tensorboard_writes_events_without_importing_pytorch(tmp_path):
  had_torch = 'torch' in sys.modules
  out = workdir.Workdir(str(tmp_path), load_config('ae'))
  out.write_tensorboard(10, {'train/loss': 1.0, 'epoch_time_s': 0.1})
  out.close()
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert ('torch' in sys.modules) == had_torch
