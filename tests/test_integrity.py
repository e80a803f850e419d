"""A workdir is one run (issue 12): a changed config is refused, a corrupt latest checkpoint falls back to
the one before, metrics survive kills, a second process is locked out, and divergence that the loss does
not show is caught. Each test reproduces a case that went wrong before (see the issue)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aelab.train import checkpoints, engine, loop, sweep, workdir as workdir_lib, writers

from aelab import config as config_lib
from conftest import load_config, small


def _tiny(epochs: int = 2):
  config = small(load_config('ae'), epochs=epochs)
  config.data.max_train_examples = 256
  config.eval.final_metrics = False
  config.train.checkpoint_every = 1
  return config


def _epochs(path) -> list[int]:
  with open(os.path.join(path, 'metrics.jsonl')) as f:
    return [json.loads(line)['epoch'] for line in f]


def _bytes(path, name) -> bytes:
  with open(os.path.join(path, name), 'rb') as f:
    return f.read()


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A finished 2-epoch run: ``(workdir, summary)``."""
  path = tmp_path_factory.mktemp('finished')
  return path, engine.train_and_evaluate(_tiny(), str(path), log=lambda line: None)


# ---- 1/2: a workdir is one run ----


def test_a_finished_run_rerun_with_another_config_is_refused_and_untouched(finished, tmp_path):
  path, _ = finished
  before = {n: _bytes(path, n) for n in ('config.json', 'summary.json', 'metrics.jsonl')}
  other = _tiny()
  other.optimizer.learning_rate = 0.05
  other.seed = 7
  changed = r'optimizer.learning_rate: 0.001 -> 0.05, seed: 0 -> 7.*new --workdir'
  with pytest.raises(config_lib.ConfigError, match=changed):
    engine.train_and_evaluate(other, str(path))
  assert {n: _bytes(path, n) for n in before} == before


def test_lowering_num_epochs_is_refused_and_output_only_fields_may_differ(finished):
  path, summary = finished
  shorter = _tiny(epochs=1)
  with pytest.raises(config_lib.ConfigError, match=r'train.num_epochs: 2 -> 1'):
    engine.train_and_evaluate(shorter, str(path))
  outputs = _tiny()
  outputs.train.update(figures_every=5, checkpoint_every=7, compilation_cache=False)
  outputs.eval.nll_samples = 10
  lines = []
  assert engine.train_and_evaluate(outputs, str(path), log=lines.append) == summary
  assert not lines


def test_a_stopped_run_rerun_with_another_rate_is_refused(tmp_path):
  """Stopped after epoch 1 of 2 (its pointer says epoch 1, no summary): another rate would mix two runs."""
  engine.train_and_evaluate(_tiny(epochs=1), str(tmp_path))
  os.remove(tmp_path / 'summary.json')
  other = _tiny()
  other.optimizer.learning_rate = 0.05
  with pytest.raises(config_lib.ConfigError, match=r'optimizer.learning_rate: 0.001 -> 0.05'):
    engine.train_and_evaluate(other, str(tmp_path))
  assert _epochs(tmp_path) == [1]


def test_raising_num_epochs_continues_and_says_so(tmp_path):
  engine.train_and_evaluate(_tiny(epochs=1), str(tmp_path))
  lines = []
  longer = engine.train_and_evaluate(_tiny(epochs=2), str(tmp_path), log=lines.append)
  assert any('train.num_epochs raised from 1 to 2' in line for line in lines), lines
  assert longer['epochs'] == 2 and _epochs(tmp_path) == [1, 2]
  assert json.load(open(tmp_path / 'config.json'))['train']['num_epochs'] == 2


def test_config_fields_added_since_a_run_count_as_their_defaults(finished):
  path, _ = finished
  stored = json.load(open(path / 'config.json'))
  del stored['eval']['projection']  # as written by an older aelab
  assert workdir_lib.result_changes(stored, json.loads(_tiny().to_json_best_effort())) == {}


def test_a_sweep_rerun_with_a_changed_base_config_is_refused(tmp_path):
  runs = sweep.axis('seed', [0, 1])
  sweep.run_sweep(_tiny(epochs=1), runs, str(tmp_path), log=lambda line: None)
  changed = _tiny(epochs=1)
  changed.model.latent_dim = 4
  with pytest.raises(config_lib.ConfigError, match=r'model.latent_dim: 16 -> 4'):
    sweep.run_sweep(changed, runs, str(tmp_path), log=lambda line: None)
  assert sweep.read_summary(str(tmp_path), sweep.members(changed, runs)[0]) is None  # not "finished"


# ---- 4: a corrupt latest checkpoint ----


def _truncate_data_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state', 'd')) for f in fs]
  biggest = max(files, key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 2)


def _truncate_metadata(step_dir):
  os.truncate(os.path.join(step_dir, 'state', '_METADATA'), 10)


def _delete_data_files(step_dir):
  for d, _, fs in os.walk(os.path.join(step_dir, 'state', 'd')):
    for f in fs:
      os.remove(os.path.join(d, f))


@pytest.mark.parametrize('damage', [_truncate_data_file, _truncate_metadata, _delete_data_files])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_one_before(damage, finished, tmp_path):
  path, summary = finished
  tmp_path = tmp_path / 'run'
  shutil.copytree(path, tmp_path)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  os.remove(tmp_path / 'summary.json')  # as if killed during the final evaluation
  damage(str(tmp_path / 'checkpoints' / '2'))
  lines = []
  resumed = engine.train_and_evaluate(_tiny(), str(tmp_path), log=lines.append)
  broken = [line for line in lines if 'does not read back' in line]
  assert len(broken) == 1 and 'epoch 2' in broken[0] and '\n' not in broken[0], lines
  assert any(line.startswith('Resuming from the checkpoint of epoch 1') for line in lines), lines
  assert {k: resumed[k] for k in resumed if '/' in k} == {k: summary[k] for k in summary if '/' in k}
  assert _epochs(tmp_path) == [1, 2]


def _flip_data_bytes(step_dir):
  """4 bytes XORed in the middle of the biggest data file (issue 20, finding 4): same size, other content."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state')) for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    flipped = bytes(b ^ 0xFF for b in f.read(4))
    f.seek(os.path.getsize(biggest) // 2)
    f.write(flipped)


def test_a_latest_checkpoint_with_flipped_bytes_is_damaged_and_the_run_falls_back(finished, tmp_path):
  path, summary = finished
  tmp_path = tmp_path / 'run'
  shutil.copytree(path, tmp_path)
  os.remove(tmp_path / 'summary.json')
  _flip_data_bytes(str(tmp_path / 'checkpoints' / '2'))
  lines = []
  resumed = engine.train_and_evaluate(_tiny(), str(tmp_path), log=lines.append)
  broken = [line for line in lines if 'is damaged' in line]  # before: resumed from it, no line
  assert len(broken) == 1 and broken[0].startswith('The checkpoint of epoch 2 in ') and '\n' not in broken[0], lines
  assert 'read back with other bytes than were saved: checksums differ for' in broken[0]
  assert any(line.startswith('Resuming from the checkpoint of epoch 1') for line in lines), lines
  assert {k: resumed[k] for k in resumed if '/' in k} == {k: summary[k] for k in summary if '/' in k}


def test_at_least_two_checkpoints_are_kept(tmp_path):
  config = _tiny(epochs=3)
  config.train.keep_checkpoints = 1
  engine.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']


# ---- 5: the metrics history ----


class _Crash(Exception):
  pass


def test_metrics_written_before_the_first_checkpoint_are_dropped_on_rerun(tmp_path, monkeypatch, finished):
  """Killed after epoch 1's metrics line, before any checkpoint: the rerun starts over, no epoch twice."""
  config = _tiny()
  config.train.checkpoint_every = 1000
  write = writers.JsonlWriter.write_scalars

  def write_then_crash(self, step, scalars):
    write(self, step, scalars)
    raise _Crash()  # on the writers' thread: raised again on the training thread before the checkpoint

  monkeypatch.setattr(writers.JsonlWriter, 'write_scalars', write_then_crash)
  with pytest.raises(_Crash):
    engine.train_and_evaluate(config, str(tmp_path))
  monkeypatch.undo()
  assert _epochs(tmp_path) == [1]
  engine.train_and_evaluate(config, str(tmp_path))
  assert _epochs(tmp_path) == [1, 2]


def test_a_torn_last_line_is_dropped_and_a_lost_history_reported(finished, tmp_path):
  engine.train_and_evaluate(_tiny(epochs=1), str(tmp_path))
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"epoch": 2, "step": 8, "train/lo')  # killed mid-write
  lines = []
  engine.train_and_evaluate(_tiny(), str(tmp_path), log=lines.append)
  assert any('dropped 1 torn line' in line for line in lines), lines
  assert _epochs(tmp_path) == [1, 2]
  os.remove(tmp_path / 'metrics.jsonl')
  os.remove(tmp_path / 'summary.json')
  lines = []
  summary = engine.train_and_evaluate(_tiny(), str(tmp_path), log=lines.append)
  assert any('no metrics of epoch(s) 1-2' in line for line in lines), lines
  assert summary['epochs'] == 2 and 'train/loss' not in summary
  np.testing.assert_allclose(summary['test/recon'], finished[1]['test/recon'], rtol=1e-5)


def test_a_noop_rerun_of_a_finished_run_changes_nothing(finished):
  path, summary = finished
  names = ('summary.json', 'metrics.jsonl', 'config.json', 'checkpoint.json')
  before = {n: _bytes(path, n) for n in names}
  assert engine.train_and_evaluate(_tiny(), str(path), log=lambda line: None) == summary
  assert {n: _bytes(path, n) for n in names} == before


def test_a_figure_lost_between_checkpoint_and_drawing_is_drawn_on_resume(tmp_path, monkeypatch):
  config = _tiny()
  config.train.figures_every = 1
  submit = engine.figures.Painter.submit

  def lose_epoch_2(self, fn, *args):
    if not (fn is engine.figures.reconstructions and args[1] == 2):
      submit(self, fn, *args)

  def crash(*args):
    raise _Crash()  # killed after epoch 2's checkpoint, before its figure was drawn

  monkeypatch.setattr(engine.figures.Painter, 'submit', lose_epoch_2)
  monkeypatch.setattr(loop, 'finish', crash)
  with pytest.raises(_Crash):
    engine.train_and_evaluate(config, str(tmp_path))
  monkeypatch.undo()
  assert checkpoints.latest(str(tmp_path))[2] == 2
  assert not (tmp_path / 'figures' / 'reconstructions_epoch002.png').exists()
  engine.train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / 'figures' / 'reconstructions_epoch002.png').exists()
  with np.load(tmp_path / 'figures' / 'reconstructions_by_epoch.npz') as stored:
    assert sorted(stored.files) == ['epoch_001', 'epoch_002']


# ---- 6: one process per workdir ----


_HOLD = ('import fcntl, os, sys, time\n'
         'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n'
         'fcntl.flock(fd, fcntl.LOCK_EX)\n'
         'os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)\n'
         'print("held", flush=True)\n'
         'time.sleep(60)\n')


def test_a_second_process_is_kept_out_and_a_stale_lock_taken_over(tmp_path):
  os.makedirs(tmp_path / 'run')
  lock = str(tmp_path / 'run' / workdir_lib.LOCK)
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, lock], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(workdir_lib.WorkdirBusy, match=f'in use by process {holder.pid}'):
      engine.train_and_evaluate(_tiny(epochs=1), str(tmp_path / 'run'))
    assert not (tmp_path / 'run' / 'metrics.jsonl').exists()
  finally:
    holder.kill()
    holder.wait()
  assert open(lock).read().strip() == str(holder.pid)  # its process is gone: a stale lock
  engine.train_and_evaluate(_tiny(epochs=1), str(tmp_path / 'run'))
  assert _epochs(tmp_path / 'run') == [1]
  assert open(lock).read().strip() == str(os.getpid())


# ---- 7: divergence the loss does not show ----


def test_exploding_parameters_stop_a_run_though_the_loss_stays_finite(tmp_path):
  config = _tiny(epochs=2)
  config.optimizer.learning_rate = 1e6  # MSE of a sigmoid output: the loss stays bounded
  with pytest.raises(FloatingPointError, match=r'A parameter reached magnitude .* at epoch 1.*new --workdir'):
    engine.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'summary.json').exists()


def test_what_counts_as_diverged():
  def out(loss=0.1, param=3.0, **test):
    return {'train': {'loss': np.array([0.2, loss])}, 'test': {'recon': 0.1, **test}, 'param_max_abs': param}

  assert engine.divergence(out(), 4) is None
  assert engine.divergence(out(code_mean_abs=50.0, code_norm=900.0), 4) is None
  assert engine.divergence(out(loss=np.inf), 4) == 'The training loss became inf at epoch 4, step 2 of 2'
  assert 'test/recon_mse became nan' in engine.divergence(out(recon_mse=np.nan), 4)
  assert 'A parameter became nan' in engine.divergence(out(param=np.nan), 4)
  assert 'A parameter reached magnitude 2e+06' in engine.divergence(out(param=2e6), 4)
  assert 'test/code_mean_abs=2.7e+16' in engine.divergence(out(code_mean_abs=2.7e16), 4)


def test_a_diverged_model_of_a_sweep_stops_using_compute(tmp_path, monkeypatch):
  runs = [{'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 1e6}]
  sizes = []
  program = loop.Program

  def counted(runs_of_group, *args, **kwargs):
    sizes.append(len(runs_of_group))
    return program(runs_of_group, *args, **kwargs)

  monkeypatch.setattr(loop, 'Program', counted)
  lines = []
  with pytest.raises(FloatingPointError, match=r'^1 runs diverged and stopped \(optimizer.learning_rate=1e\+06: (A '
                     r'parameter reached magnitude|The test codes reached)'):  # before: 'loss stopped being finite'
    sweep.run_sweep(_tiny(epochs=3), runs, str(tmp_path), log=lines.append)
  assert sizes == [2, 1], lines  # epochs 2-3 ran in a program of the healthy model alone
  assert any('1 diverged model(s) left out' in line for line in lines), lines
  good = tmp_path / sweep.run_name(runs[0])
  assert _epochs(good) == [1, 2, 3]
  alone = engine.train_and_evaluate(_tiny(epochs=3), str(tmp_path / 'alone'))
  stored = json.load(open(good / 'summary.json'))
  np.testing.assert_allclose([stored[k] for k in alone if k.startswith('test/')],
                             [alone[k] for k in alone if k.startswith('test/')], rtol=2e-5)


def test_a_sweep_with_a_torn_summary_names_the_file_and_writes_it_again(tmp_path):
  runs = sweep.axis('seed', [0, 1])
  first = sweep.run_sweep(_tiny(epochs=1), runs, str(tmp_path), log=lambda line: None)
  torn = tmp_path / sweep.run_name(runs[1]) / 'summary.json'
  torn.write_text(torn.read_text()[:20])
  lines = []
  again = sweep.run_sweep(_tiny(epochs=1), runs, str(tmp_path), log=lines.append)
  assert any(str(torn) in line and 'unreadable' in line for line in lines), lines
  name = sweep.run_name(runs[1])
  assert again[name]['test/recon'] == first[name]['test/recon']
  assert json.load(open(torn))['epochs'] == 1
