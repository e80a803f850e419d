"""A sweep over 2 local jax.distributed processes (127.0.0.1, CPU collectives over Gloo): uneven splits,
runs of different lengths and structures, a rerun with unequal work left, and a process whose peer never
comes. The processes checkpoint independently (aelab/checkpoints.py), so none waits for the other."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aelab import data

from aelab.train import engine, parallel, sweep
from aelab.train.workdir import Workdir
from conftest import CACHE_DIR, ROOT, load_config, small

sys.path.insert(0, str(ROOT))  # `launch` is a folder of the repository, not of the installed package
from launch import local  # noqa: E402

# 3 runs on 2 processes: process 0 trains seeds 0 and 2 (two groups: their num_epochs differ), process 1
# seed 1; one process would train seeds 0 and 1 as one vectorized group.
SWEEP = [{'seed': 0}, {'seed': 1}, {'seed': 2, 'train.num_epochs': 2}]
TINY = {'model.hidden': (16,), 'model.latent_dim': 4, 'data.max_train_examples': 256, 'train.num_epochs': 1}
ENV = {'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]), 'AELAB_TEST_CACHE': CACHE_DIR}


def _tiny_ae():
  return sweep.apply(small(load_config('ae'), epochs=1), TINY)


def _command(sweep_file, workdir):
  overrides = [f'--config.{k}={v}'.replace(' ', '') for k, v in TINY.items()]
  return [sys.executable, '-m', 'aelab.main', f'--config={ROOT}/configs/ae.py', *overrides,
          '--config.train.figures_every=0', '--config.eval.nll_samples=100',
          f'--config.train.compilation_cache_dir={CACHE_DIR}', f'--sweep={sweep_file}', f'--workdir={workdir}']


def _two_processes(sweep_file, workdir):
  ended = local.run(_command(sweep_file, workdir), 2, timeout_s=120, env=ENV)
  for e in ended:
    assert e.returncode == 0, f'process {e.process_id}: exit {e.returncode}\n{e.output[-3000:]}'
  return ended


def _summary(workdir, overrides):
  with open(os.path.join(workdir, sweep.run_name(overrides), 'summary.json')) as f:
    return json.load(f)


def _assert_same_metrics(a, b):
  keys = sorted(k for k in a if k.startswith(('train/', 'test/')))
  assert keys and keys == sorted(k for k in b if k.startswith(('train/', 'test/')))
  np.testing.assert_allclose([a[k] for k in keys], [b[k] for k in keys], rtol=2e-5, atol=1e-6, err_msg=str(keys))


def _checkpointed_params(workdir, overrides, config):
  """The run's parameters from its latest checkpoint (restored by this one process), and the epoch."""
  config = sweep.apply(config, overrides)
  dataset = data.load(config.data)
  abstract = engine.abstract_state(engine.make_run(config, dataset.shape), dataset)
  state, epoch = engine.restore(Workdir(os.path.join(workdir, sweep.run_name(overrides)), config), abstract)
  return jax.tree.leaves(state['params']), epoch


def test_two_processes_split_three_runs_unevenly_with_the_numbers_of_one_process(tmp_path):
  sweep_file = tmp_path / 'three.py'
  sweep_file.write_text(f'def get_sweep(arg=None):\n  return {SWEEP!r}\n')
  reference = sweep.run_sweep(_tiny_ae(), SWEEP, str(tmp_path / 'one'), log=lambda line: None)
  assert [s['epochs'] for s in reference.values()] == [1, 1, 2]

  workdir = str(tmp_path / 'two')
  first = _two_processes(sweep_file, workdir)
  assert 'Sweep of 2 runs in 2 groups' in first[0].output and 'Sweep of 1 runs in 1 groups' in first[1].output
  for overrides in SWEEP:
    _assert_same_metrics(_summary(workdir, overrides), reference[sweep.run_name(overrides)])
  assert [len(json.load(open(f'{workdir}/sweep.{i}.json'))) for i in (0, 1)] == [2, 1]
  # Process 1's checkpoint holds its arrays (orbax used to write those of process 0 only).
  params, epoch = _checkpointed_params(workdir, SWEEP[1], _tiny_ae())
  expected, _ = _checkpointed_params(str(tmp_path / 'one'), SWEEP[1], _tiny_ae())
  assert epoch == 1 and len(params) == len(expected) > 0
  for a, b in zip(params, expected):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # A rerun where process 0 has nothing left and process 1 retrains its run from scratch.
  lost = sweep.run_name(SWEEP[1])
  shutil.rmtree(os.path.join(workdir, lost))
  again = _two_processes(sweep_file, workdir)
  assert again[0].output.count('1 of 1 runs already finished, skipped') == 2, again[0].output[-2000:]
  assert 'epoch 1/1' in again[1].output, again[1].output[-2000:]
  _assert_same_metrics(_summary(workdir, SWEEP[1]), reference[lost])


def test_a_process_whose_peer_never_comes_stops_with_one_line(tmp_path):
  sweep_file = tmp_path / 'two.py'
  sweep_file.write_text("def get_sweep(arg=None):\n  return [{'seed': 0}, {'seed': 1}]\n")
  env = {**ENV, 'AELAB_DISTRIBUTED_TIMEOUT_S': '3'}
  (alone,) = local.run(_command(sweep_file, tmp_path / 'w'), 2, timeout_s=120, env=env, process_ids=[1])
  assert alone.returncode == 1, alone.output[-2000:]
  last = alone.output.strip().splitlines()[-1]
  assert last.startswith('error: process 0 of 2 was lost (it did not start within 3 s)'), alone.output[-2000:]
  assert 'rerun the same command' in last and (tmp_path / 'w' / sweep.run_name({'seed': 1}) / 'summary.json').exists()


KILLED = [{'seed': 0}, {'seed': 1}]


def _start_two(sweep_file, workdir, env):
  """Both processes of a job (as launch.local starts them), their output read line by line."""
  port = local.free_port()
  base = {**os.environ, **env, 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2'}
  command = _command(sweep_file, workdir)
  command[command.index('--config.train.num_epochs=1')] = '--config.train.num_epochs=40'
  return [subprocess.Popen(command, env={**base, 'JAX_PROCESS_ID': str(i)}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True) for i in (0, 1)]


@pytest.mark.parametrize('victim,sig', [(1, 'SIGTERM'), (1, 'SIGKILL'), (0, 'SIGTERM'), (0, 'SIGKILL')])
def test_one_process_dies_the_other_finishes_and_names_it(tmp_path, victim, sig):
  """A signal to one process in its first epoch: the other finishes its run and ends within a minute with one
  line naming the lost process and the rerun command (no hang in JAX's shutdown barrier, no C++ abort); the
  rerun finishes the sweep."""
  sweep_file = tmp_path / 'two.py'
  sweep_file.write_text(f'def get_sweep(arg=None):\n  return {KILLED!r}\n')
  workdir = tmp_path / 'w'
  env = {**ENV, 'AELAB_PEER_TIMEOUT_S': '4'}
  procs = _start_two(sweep_file, workdir, env)
  for line in procs[victim].stdout:
    if 'epoch 1/' in line:
      break
  started = time.time()
  procs[victim].send_signal(getattr(signal, sig))
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  survivor = procs[1 - victim]
  assert time.time() - started < 60
  lines = outputs[1 - victim].strip().splitlines()
  assert survivor.returncode == 1 and lines[-1].startswith(f'error: process {victim} of 2 '), outputs[1 - victim]
  assert ('stopped (by SIGTERM)' if sig == 'SIGTERM' else 'was lost') in lines[-1]
  assert 'rerun the same command' in lines[-1] and not any('Traceback' in o or 'F1204' in o for o in outputs)
  if sig == 'SIGTERM':
    assert procs[victim].returncode == 128 + signal.SIGTERM
    assert outputs[victim].strip().splitlines()[-1].startswith('Stopped by SIGTERM')
  if (victim, sig) == (0, 'SIGKILL'):  # the rerun finishes the sweep
    for p, out in zip(_start_two(sweep_file, workdir, ENV), (0, 1)):
      assert p.wait(timeout=300) == 0, p.stdout.read()[-2000:]
    assert all((workdir / sweep.run_name(m) / 'summary.json').exists() for m in KILLED)


def test_an_incomplete_job_environment_is_a_clear_error(monkeypatch):
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '127.0.0.1:1234')
  monkeypatch.delenv('JAX_PROCESS_ID', raising=False)
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  with pytest.raises(parallel.DistributedError, match='set JAX_NUM_PROCESSES .* and JAX_PROCESS_ID'):
    parallel.initialize_distributed()
  assert parallel.connect_timeout_s({}) == 45 and parallel.connect_timeout_s({'AELAB_DISTRIBUTED_TIMEOUT_S': '7'}) == 7
  with pytest.raises(parallel.DistributedError, match='whole number of seconds'):
    parallel.connect_timeout_s({'AELAB_DISTRIBUTED_TIMEOUT_S': 'soon'})
