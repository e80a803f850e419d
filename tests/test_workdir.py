"""A run's directory: metrics truncated to a checkpoint, atomic JSON and files, TensorBoard without PyTorch."""
import json
import os
import re
import sys

import numpy as np
import pytest

from aelab.train import files, history, workdir, writers
from conftest import load_config


def test_metrics_are_truncated_to_the_restored_epoch_and_summaries_replace_atomically(tmp_path):
  out = workdir.Workdir(str(tmp_path), load_config('ae'))
  jsonl = writers.JsonlWriter(out.path)
  for epoch in (1, 2, 3):
    jsonl.write_scalars(epoch * 10, {'epoch': epoch, 'train/loss': 1.0 / epoch})
  assert history.read(out.path)[1] == {'epoch': 2, 'step': 20, 'train/loss': 0.5}
  assert history.truncate(out.path, 2) is None
  assert [r['epoch'] for r in out.read_metrics()] == [1, 2]
  out.write_summary({'epochs': 2, 'test/recon': 0.5})
  out.write_summary({'epochs': 3, 'test/recon': np.float32(0.25)})
  assert out.read_summary() == {'epochs': 3, 'test/recon': 0.25}
  assert sorted(os.listdir(tmp_path)) == ['metrics.jsonl', 'summary.json']  # no temporary files left
  out.write_config()
  assert json.load(open(tmp_path / 'config.json'))['model']['name'] == 'ae'


def test_a_lost_history_is_reported_by_epoch_ranges(tmp_path):
  history.append(str(tmp_path), {'epoch': 2, 'step': 20})
  history.append(str(tmp_path), {'epoch': 6, 'step': 60})
  note = history.truncate(str(tmp_path), 5)
  assert note.endswith('no metrics of epoch(s) 1, 3-5 (lost; training goes on from the checkpoint).'), note
  assert [r['epoch'] for r in history.read(str(tmp_path))] == [2]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
  path = str(tmp_path / 'a.json')
  files.write_json(path, {'x': 1})
  with pytest.raises(ZeroDivisionError):
    with files.replacing(path) as f:
      f.write('{"x": ')
      1 / 0
  assert json.load(open(path)) == {'x': 1} and os.listdir(tmp_path) == ['a.json']
  with files.replacing(str(tmp_path / 'b.npz'), 'wb') as f:
    np.savez_compressed(f, y=np.arange(3))
  assert np.load(tmp_path / 'b.npz')['y'].tolist() == [0, 1, 2]


def test_tensorboard_writes_events_without_importing_pytorch(tmp_path):
  had_torch = 'torch' in sys.modules
  writer = writers.TensorboardWriter(str(tmp_path))
  writer.write_scalars(10, {'epoch': 1, 'train/loss': 1.0, 'epoch_time_s': 0.1})
  writer.close()
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert ('torch' in sys.modules) == had_torch


# ---- issue 20, finding 5: --workdir must name a directory ----

def test_workdir_must_name_a_directory_of_its_own(tmp_path, monkeypatch):
  from conftest import ROOT  # noqa: PLC0415
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'file').write_text('x')
  os.symlink(tmp_path / 'gone', tmp_path / 'dangling')
  cases = {'': '--workdir is empty', ' ': '--workdir is empty', '.': '--workdir=. is the current directory',
           str(tmp_path): 'is the current directory', str(ROOT): f'is the aelab repository {ROOT}',
           '/': 'is the aelab repository', 'file': '--workdir=file is a file, not a directory',
           'dangling': f'--workdir=dangling is a link to {tmp_path / "gone"}, which does not exist'}
  for path, message in cases.items():
    with pytest.raises(workdir.ConfigError, match=re.escape(message)) as info:
      workdir.check_path(path)
    assert '\n' not in str(info.value)
  for fine in ('runs/ae', str(tmp_path / 'new'), str(ROOT / 'runs' / 'ae')):
    assert workdir.check_path(fine) == fine
  assert os.listdir(tmp_path) == ['file', 'dangling'] or sorted(os.listdir(tmp_path)) == ['dangling', 'file']
