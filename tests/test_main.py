"""The command line: ``python -m aelab.main`` stops cleanly on SIGTERM and a rerun resumes the run."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import CACHE_DIR, ROOT


def _command(workdir, epochs):
  return [sys.executable, '-m', 'aelab.main', '--config=configs/ae.py', f'--workdir={workdir}',
          f'--config.train.num_epochs={epochs}', '--config.train.figures_every=0',
          '--config.train.checkpoint_every=1000',
          f'--config.train.compilation_cache_dir={CACHE_DIR}', '--config.data.max_train_examples=256']


def _train_until_sigterm(workdir, env, lines: int) -> subprocess.CompletedProcess:
  """Runs the 100,000-epoch command in ``workdir`` and sends SIGTERM once metrics.jsonl has ``lines`` lines."""
  process = subprocess.Popen(_command(workdir, 100_000), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 120
  while not (metrics.exists() and metrics.read_text().count('\n') >= lines) and time.time() < deadline:
    time.sleep(0.1)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=120)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _epochs(workdir) -> list[int]:
  return [r['epoch'] for r in map(json.loads, (workdir / 'metrics.jsonl').read_text().splitlines())]


def test_sigterm_saves_exits_with_its_status_and_the_rerun_resumes(tmp_path):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  first = _train_until_sigterm(tmp_path, env, 3)
  assert first.returncode == 128 + signal.SIGTERM, first.stderr[-2000:]
  assert 'Stopped by SIGTERM after epoch' in first.stderr and 'rerun the same command to resume' in first.stderr
  epoch = _epochs(tmp_path)[-1]
  assert os.listdir(tmp_path / 'checkpoints') == [str(epoch)]  # saved on the signal, not on the schedule
  again = _train_until_sigterm(tmp_path, env, epoch + 1)
  assert again.returncode == 128 + signal.SIGTERM, again.stderr[-2000:]
  assert f'Resuming from the checkpoint of epoch {epoch}' in again.stdout
  later = _epochs(tmp_path)[-1]
  assert later > epoch and _epochs(tmp_path) == list(range(1, later + 1))
  shorter = subprocess.run(_command(tmp_path, later + 1), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)  # a workdir is one run: its num_epochs may rise, not fall
  assert shorter.returncode == 1 and shorter.stderr.count('\n') == 1, shorter.stderr[-2000:]
  assert f'train.num_epochs: 100000 -> {later + 1}' in shorter.stderr
  assert _epochs(tmp_path) == list(range(1, later + 1))
