"""SIGINT / SIGTERM at any moment of ``python -m aelab.main`` end in one line, exit status 128 + signal, and a
workdir that the same command resumes (aelab/interrupts.py). Each case runs the real command in a
subprocess; where the moment matters, a driver patches the function named by the case to send the signal
to its own process on entry (the handler then runs as for a signal from outside)."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import CACHE_DIR, ROOT

COMMAND = ['--config=configs/vae.py', '--config.train.num_epochs=2', '--config.train.figures_every=0',
           '--config.eval.nll_samples=20', '--config.model.hidden=(32,)', '--config.model.latent_dim=4',
           f'--config.train.compilation_cache_dir={CACHE_DIR}']

# Runs aelab.main (or the module AELAB_TEST_RUN names) with sys.argv[3:], after patching module sys.argv[1]'s
# function sys.argv[2] to send the signals in AELAB_TEST_SIGNALS (names, with AELAB_TEST_GAP_S seconds between
# them) to this process first (with AELAB_TEST_ONCE, on the first call only; with AELAB_TEST_THIS_THREAD, to the
# calling thread).
DRIVER = """
import importlib, os, runpy, signal, sys, threading, time
from aelab import interrupts
interrupts.install()
module, name = sys.argv[1], sys.argv[2]
owner, _, attr = name.rpartition('.')
target = importlib.import_module(module)
for part in filter(None, owner.split('.')):
  target = getattr(target, part)
original = getattr(target, attr)
sent = []
def signalled(*args, **kwargs):
  if sent and os.environ.get('AELAB_TEST_ONCE'):  # the first call only (e.g. one of several threads)
    return original(*args, **kwargs)
  sent.append(True)
  for i, sig in enumerate(os.environ['AELAB_TEST_SIGNALS'].split(',')):
    if i:
      time.sleep(float(os.environ.get('AELAB_TEST_GAP_S', '0.05')))
    if os.environ.get('AELAB_TEST_THIS_THREAD'):  # the kernel may deliver a process's signal to any thread
      signal.pthread_kill(threading.get_ident(), getattr(signal, sig))
    else:
      os.kill(os.getpid(), getattr(signal, sig))
  return original(*args, **kwargs)
setattr(target, attr, signalled)
run = os.environ.get('AELAB_TEST_RUN', 'aelab.main')
sys.argv = [run] + sys.argv[3:]
runpy.run_module(run, run_name='__main__')
"""


def _run(workdir, *prefix, env=None):
  return subprocess.run([sys.executable, *prefix, *COMMAND, f'--workdir={workdir}'], capture_output=True, text=True,
                        cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)


def _signalled(workdir, module, name, signals):
  return _run(workdir, '-c', DRIVER, module, name, env={'AELAB_TEST_SIGNALS': signals})


def _one_line(result, expected: str) -> None:
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(expected), result.stderr[-3000:]


def _resumes(workdir) -> dict:
  """The same command, unpatched, finishes the run: summary.json of both epochs, one metrics row each."""
  rerun = _run(workdir, '-m', 'aelab.main')
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  summary = json.loads((pathlib.Path(workdir) / 'summary.json').read_text())
  rows = [json.loads(line) for line in (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()]
  assert summary['epochs'] == 2 and [r['epoch'] for r in rows] == [1, 2]
  return summary


def test_sigint_during_the_end_of_training_metrics(tmp_path):
  result = _signalled(tmp_path, 'aelab.train.final', 'final_metrics', 'SIGINT')
  assert result.returncode == 128 + signal.SIGINT
  _one_line(result, 'Stopped by SIGINT during the end-of-training metrics')
  assert not (tmp_path / 'summary.json').exists()
  assert 'test/nll' in _resumes(tmp_path)  # the rerun computes them from the last checkpoint


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """A workdir that ``python -m aelab.main`` finished (copied by each test that changes it)."""
  workdir = tmp_path_factory.mktemp('finished')
  assert _run(workdir, '-m', 'aelab.main').returncode == 0
  return workdir


@pytest.mark.parametrize('sig', ['SIGINT', 'SIGTERM'])
def test_a_signal_during_python_m_aelab_evaluate_leaves_the_summary_and_the_lock(tmp_path, sig, finished):
  """One line and 128 + signal (aelab.evaluate installed no handlers before: under this driver's it went on
  and exited 0); summary.json as it was; the rerun evaluates."""
  shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
  before = (tmp_path / 'summary.json').read_bytes()
  evaluate = [sys.executable, '-c', DRIVER, 'aelab.eval.evaluators', 'final_metrics', f'--workdir={tmp_path}']
  env = {**os.environ, 'AELAB_TEST_SIGNALS': sig, 'AELAB_TEST_RUN': 'aelab.evaluate'}
  result = subprocess.run(evaluate, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  assert result.returncode == 128 + getattr(signal, sig)
  _one_line(result, f'Stopped by {sig} during the evaluation; {tmp_path}/summary.json is as it was')
  assert (tmp_path / 'summary.json').read_bytes() == before
  rerun = subprocess.run([sys.executable, '-m', 'aelab.evaluate', f'--workdir={tmp_path}'], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]  # the lock was released
  assert json.loads((tmp_path / 'summary.json').read_text())['test/nll'] > 0


def test_sigterm_during_the_first_compilation(tmp_path):
  result = _signalled(tmp_path, 'jax.stages', 'Lowered.compile', 'SIGTERM')
  assert result.returncode == 128 + signal.SIGTERM
  _one_line(result, 'Stopped by SIGTERM during compiling')
  _resumes(tmp_path)


def test_two_signals_in_an_epoch_stop_at_once(tmp_path):
  result = _signalled(tmp_path, 'aelab.train.writers', 'AsyncWriter.write_scalars', 'SIGINT,SIGINT')
  assert result.returncode == 128 + signal.SIGINT
  _one_line(result, 'Stopped by SIGINT during training (a second signal)')
  _resumes(tmp_path)


def test_sigterm_at_start_up_leaves_no_workdir(tmp_path):
  workdir = tmp_path / 'run'
  process = subprocess.Popen([sys.executable, '-m', 'aelab.main', *COMMAND, f'--workdir={workdir}'], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  time.sleep(0.5)  # importing JAX and the config
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith('Stopped by SIGTERM during start-up'), stderr[-3000:]
  assert not workdir.exists()


@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGINT'])
def test_a_signal_in_an_epoch_checkpoints_and_says_so(tmp_path, sig):
  result = _signalled(tmp_path, 'aelab.train.writers', 'AsyncWriter.write_scalars', sig)
  assert result.returncode == 128 + getattr(signal, sig)
  _one_line(result, f'Stopped by {sig} after epoch 1, checkpointed')
  _resumes(tmp_path)


def test_a_signal_in_a_library_run_leaves_no_state_behind(monkeypatch):
  """aelab used as a library (no install): after a loop stopped by a signal, the next phases run normally."""
  from aelab import interrupts
  with interrupts.deferred() as received:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)  # the handler runs
    assert received == [signal.SIGTERM]
  with interrupts.phase('compiling'):  # would raise Stopped if the signal were still pending
    pass


SAE_SWEEP = {'train.num_epochs': 2, 'train.batch_size': 32, 'train.figures_every': 0, 'eval.final_metrics': False,
             'train.compilation_cache_dir': str(CACHE_DIR), 'data.stream': True, 'data.stream_chunk': 2,
             'data.activations.test_fraction': 0.2, 'model.latent_dim': 8, 'sae.k': 2, 'sae.aux_k': 4}


def test_sigterm_in_a_sweep_of_groups_on_one_stream_checkpoints_each_group_and_resumes(tmp_path):
  """The groups of a shared-stream sweep train in threads (aelab.train.sweep._train_together): one SIGTERM,
  sent as the first group starts building its state, stops each group after checkpointing its first epoch;
  the rerun finishes with the numbers of an uninterrupted sweep."""
  from aelab import config as config_lib
  from aelab.train import checkpoints, sweep
  import numpy as np
  np.save(tmp_path / 'acts.npy', np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32))
  (tmp_path / 'acts').mkdir()
  os.replace(tmp_path / 'acts.npy', tmp_path / 'acts' / 'a.npy')
  (tmp_path / 'widths.py').write_text("def get_sweep(arg=None):\n  return [{'model.latent_dim': 8}, "
                                      "{'model.latent_dim': 16}]\n")
  command = [f'--config=configs/sae_topk.py:activations={tmp_path / "acts"}', f'--sweep={tmp_path / "widths.py"}',
             *[f'--config.{k}={v}' for k, v in SAE_SWEEP.items()]]
  run = lambda *prefix, env=None: subprocess.run(  # noqa: E731
      [sys.executable, *prefix, *command, f'--workdir={tmp_path / "sweep"}'], capture_output=True, text=True,
      cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)
  # to the group's thread, where the kernel may deliver it (its handler runs when the main thread runs bytecode)
  result = run('-c', DRIVER, 'aelab.train.loop', 'initial_state',
               env={'AELAB_TEST_SIGNALS': 'SIGTERM', 'AELAB_TEST_ONCE': '1', 'AELAB_TEST_THIS_THREAD': '1'})
  assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
  _one_line(result, 'Stopped by SIGTERM after epoch 1, checkpointed')
  runs = ['model.latent_dim=8', 'model.latent_dim=16']
  for name in runs:
    assert checkpoints.latest(str(tmp_path / 'sweep' / name))[2] == 1, name
    assert not (tmp_path / 'sweep' / name / 'summary.json').exists()
  assert run('-m', 'aelab.main').returncode == 0
  config_file = config_lib.load_module(os.path.join(ROOT, 'configs', 'sae_topk.py'), 'config')
  config = config_file.get_config(f'activations={tmp_path / "acts"}')
  reference = sweep.run_sweep(sweep.apply(config, SAE_SWEEP), [{'model.latent_dim': 8}, {'model.latent_dim': 16}],
                              str(tmp_path / 'reference'), log=lambda line: None)
  for name in runs:
    resumed = json.loads((tmp_path / 'sweep' / name / 'summary.json').read_text())
    metrics = [k for k in reference[name] if k.startswith(('train/', 'test/'))]
    assert resumed['epochs'] == 2 and 'train/loss' in metrics and 'test/l0' in metrics, name
    for key in metrics:
      assert resumed[key] == pytest.approx(reference[name][key], rel=1e-6, abs=1e-7), (name, key)
