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


def test_sigterm_saves_exits_with_its_status_and_the_rerun_finishes(tmp_path):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  process = subprocess.Popen(_command(tmp_path, 100_000), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / 'metrics.jsonl'
  deadline = time.time() + 120
  while not (metrics.exists() and metrics.read_text().count('\n') >= 3) and time.time() < deadline:
    time.sleep(0.1)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  assert 'Stopped by SIGTERM after epoch' in stderr and 'rerun the same command to resume' in stderr
  epoch = json.loads(metrics.read_text().splitlines()[-1])['epoch']
  assert os.listdir(tmp_path / 'checkpoints') == [str(epoch)]  # saved on the signal, not on the schedule
  done = subprocess.run(_command(tmp_path, epoch + 1), cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'Resuming from the checkpoint of epoch {epoch}' in done.stdout
  assert [r['epoch'] for r in map(json.loads, metrics.read_text().splitlines())] == list(range(1, epoch + 2))
