"""Sweeps: declaration helpers, grouping by structure, vectorized runs equal to single runs, resume, and
the model axis on 8 fake CPU devices (in a subprocess, so this process keeps its one device)."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from aelab.train import checkpoints, engine, parallel, sweep

from aelab import config as config_lib, data
from conftest import ROOT, load_config, small


# 8 models in one group: two KL weights x two seeds x two learning rates (the rate is held in the
# optimizer state, see aelab/optimizers.py).
SWEEP8 = sweep.product(sweep.axis('vae.kl_weight', [0.5, 2.0]), sweep.axis('seed', [0, 1]),
                       sweep.axis('optimizer.learning_rate', [1e-3, 3e-3]))


def tiny_vae():
  config = small(load_config('vae'), epochs=2)
  config.model.update(hidden=(32,), latent_dim=4)
  config.data.max_train_examples = 640  # 10 steps per epoch: compilation dominates anyway
  config.train.checkpoint_every = 1
  return config


@pytest.fixture(scope='module')
def sweep8(tmp_path_factory):
  """The 8-model sweep trained once, vectorized, on one device: ``(workdir, {name: summary})``."""
  workdir = str(tmp_path_factory.mktemp('sweep8'))
  return workdir, sweep.run_sweep(tiny_vae(), SWEEP8, workdir)


def _metrics(path):
  with open(os.path.join(path, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _assert_same_numbers(a: dict, b: dict, rtol=2e-5):
  keys = [k for k in a if k.startswith(('train/', 'test/'))]
  assert keys and set(keys) == {k for k in b if k.startswith(('train/', 'test/'))}
  np.testing.assert_allclose([a[k] for k in keys], [b[k] for k in keys], rtol=rtol, atol=1e-6, err_msg=str(keys))


def test_axis_product_and_zipped():
  seeds = sweep.axis('seed', [0, 1])
  assert sweep.product(sweep.axis('vae.kl_weight', [1.0, 4.0]), seeds) == [
      {'vae.kl_weight': 1.0, 'seed': 0}, {'vae.kl_weight': 1.0, 'seed': 1},
      {'vae.kl_weight': 4.0, 'seed': 0}, {'vae.kl_weight': 4.0, 'seed': 1}]
  assert sweep.zipped(sweep.axis('penalty.weight', [0.1, 0.2]), seeds) == [
      {'penalty.weight': 0.1, 'seed': 0}, {'penalty.weight': 0.2, 'seed': 1}]
  with pytest.raises(sweep.SweepError, match='one length'):
    sweep.zipped(seeds, sweep.axis('penalty.weight', [0.1]))
  assert len(sweep.load(str(ROOT / 'configs/sweeps/kl_weight.py'))) == 24
  assert len(sweep.load(str(ROOT / 'configs/sweeps/kl_weight.py:seeds=1'))) == 8


def test_bad_sweeps_fail_early_with_a_message(tmp_path):
  no_function = tmp_path / 'no_function.py'
  no_function.write_text('SWEEP = [{"seed": 1}]\n')
  with pytest.raises(sweep.SweepError, match='defines no get_sweep'):
    sweep.load(str(no_function))
  not_a_list = tmp_path / 'not_a_list.py'
  not_a_list.write_text('def get_sweep(arg=None):\n  return {"seed": 1}\n')
  with pytest.raises(sweep.SweepError, match='must be a list'):
    sweep.load(str(not_a_list))
  with pytest.raises(sweep.SweepError, match='not found'):
    sweep.load(str(tmp_path / 'missing.py'))
  with pytest.raises(sweep.SweepError, match='empty'):
    sweep.members(tiny_vae(), [])
  with pytest.raises(sweep.SweepError, match="no field 'vae.kl_wieght'.*kl_weight"):
    sweep.members(tiny_vae(), [{'vae.kl_wieght': 2.0}])
  with pytest.raises(sweep.SweepError, match='same run more than once'):
    sweep.members(tiny_vae(), [{'seed': 1}, {'seed': 1}])
  with pytest.raises(config_lib.ConfigError, match='kl_weight'):
    sweep.members(tiny_vae(), [{'vae.kl_weight': -1.0}])


def test_runs_are_grouped_by_structure():
  runs = sweep.members(tiny_vae(), sweep.product(sweep.axis('model.hidden', [(32,), (16,)]), sweep.axis(
      'vae.kl_weight', [1.0, 2.0]), sweep.axis('seed', [0, 1])) + [{'corruption.std': 0.3, 'seed': 5},
                                                                     {'optimizer.learning_rate': 0.01}])
  groups = sweep.group(runs)
  assert [len(g) for g in groups] == [6, 4]  # numeric hp, seed and learning rate vectorize; widths do not
  assert {m.config.model.hidden for m in groups[1]} == {(16,)}
  assert {'vae.kl_weight', 'corruption.std', 'penalty.weight', 'seed', 'optimizer.learning_rate'} <= \
      sweep.vectorized_fields(tiny_vae())
  assert not sweep.vectorized_fields(tiny_vae()) & {'model.latent_dim', 'train.batch_size', 'train.num_epochs'}
  sparsity = sweep.members(small(load_config('sparse')), sweep.load(str(ROOT / 'configs/sweeps/sparsity.py')))
  assert [len(g) for g in sweep.group(sparsity)] == [18, 18]  # L1 on a ReLU code, KL on a sigmoid code


def test_vectorized_sweep_equals_single_runs(sweep8, tmp_path):
  workdir, summaries = sweep8
  assert sorted(summaries) == sorted(sweep.run_name(o) for o in SWEEP8)
  for overrides in SWEEP8[-1:]:  # kl 2, seed 1, lr 3e-3: no field at the config's value
    name = sweep.run_name(overrides)
    single = engine.train_and_evaluate(sweep.apply(tiny_vae(), overrides), str(tmp_path / name))
    _assert_same_numbers(summaries[name], single)
    for swept, alone in zip(_metrics(os.path.join(workdir, name)), _metrics(tmp_path / name), strict=True):
      _assert_same_numbers(swept, alone)
  names = set(os.listdir(os.path.join(workdir, sweep.run_name(SWEEP8[0]))))
  assert {'config.json', 'metrics.jsonl', 'summary.json', 'checkpoint.json', 'tensorboard'} <= names
  assert 'checkpoints' not in names  # the group's one stacked checkpoint is under groups/
  assert len(os.listdir(os.path.join(workdir, 'groups'))) == 1
  losses = {s['train/loss'] for s in summaries.values()}
  assert len(losses) == 8  # every model trained with its own seed, weight and rate


def test_rerun_skips_finished_and_resumes_interrupted(sweep8):
  workdir, summaries = sweep8
  name = sweep.run_name(SWEEP8[5])
  run_path = os.path.join(workdir, name)
  os.remove(os.path.join(run_path, 'summary.json'))  # as if stopped after its first epoch
  pointer = checkpoints.read_pointer(run_path)
  checkpoints.write_pointer(run_path, pointer['directory'], pointer['index'], 1)
  lines = []
  again = sweep.run_sweep(tiny_vae(), SWEEP8, workdir, log=lines.append)
  assert any('7 of 8 runs already finished' in line for line in lines), lines
  assert any('resuming 1 runs from the checkpoints of epoch 1' in line for line in lines), lines
  assert [r['epoch'] for r in _metrics(run_path)] == [1, 2]
  _assert_same_numbers(again[name], summaries[name])
  assert json.load(open(os.path.join(workdir, 'sweep.json')))[5]['name'] == name
  assert sorted(os.listdir(os.path.join(run_path, 'checkpoints'))) == ['2']  # now a group of one


def test_a_sweep_run_resumes_as_a_single_run(sweep8, tmp_path):
  """The run's folder of a sweep, given as --workdir of a single run with more epochs, continues it."""
  workdir, summaries = sweep8
  overrides = SWEEP8[3]
  config = sweep.apply(tiny_vae(), overrides)
  config.train.num_epochs = 3
  lines = []
  run_path = os.path.join(workdir, sweep.run_name(overrides))
  longer = engine.train_and_evaluate(config, run_path, log=lines.append)
  assert lines[0].startswith('train.num_epochs raised from 2 to 3'), lines
  assert lines[1].startswith('Resuming from the checkpoint of epoch 2'), lines
  assert [r['epoch'] for r in _metrics(run_path)] == [1, 2, 3]
  alone = engine.train_and_evaluate(config, str(tmp_path / 'alone'))  # 3 epochs from scratch
  _assert_same_numbers(longer, alone)


def test_a_single_run_resumes_in_a_sweep(sweep8, tmp_path):
  """A single run trained for one epoch in a sweep run's folder is resumed by the sweep with the rest."""
  _, summaries = sweep8
  workdir = str(tmp_path)
  first = SWEEP8[1]
  config = sweep.apply(tiny_vae(), first)
  config.train.num_epochs = 1
  engine.train_and_evaluate(config, os.path.join(workdir, sweep.run_name(first)))
  lines = []
  done = sweep.run_sweep(tiny_vae(), SWEEP8[:2], workdir, log=lines.append)
  assert any('resuming 1 runs from the checkpoints of epoch 1' in line for line in lines), lines
  for overrides in SWEEP8[:2]:
    name = sweep.run_name(overrides)
    _assert_same_numbers(done[name], summaries[name])
  assert [r['epoch'] for r in _metrics(os.path.join(workdir, sweep.run_name(first)))] == [1, 2]


_EIGHT_DEVICES = textwrap.dedent('''
    import json, sys
    import jax
    sys.path.insert(0, 'tests')
    import test_sweep as t
    from aelab import data
    from aelab.train import engine, sweep
    assert jax.device_count() == 8, jax.devices()
    out = {}
    lines = []  # first the sweep, which turns on the compilation cache that the direct epoch below then hits
    out['summaries'] = sweep.run_sweep(t.tiny_vae(), t.SWEEP8, sys.argv[1], log=lines.append)
    out['lines'] = lines
    # The model axis: the group's own compiled epoch, and the shardings of the states it returns.
    config = t.tiny_vae()
    dataset = data.load(config.data)
    runs = [engine.make_run(m.config, dataset.shape) for m in sweep.members(config, t.SWEEP8)]
    program = engine.Program(runs, dataset)
    keys = jax.numpy.stack([r.init_key for r in runs])
    states = program.init(keys, jax.numpy.ones(8))
    states, _ = program.epoch(states, dataset.x_train, dataset.x_test, None, 1,
                              program.shard(jax.numpy.stack([r.train_key for r in runs])),
                              program.shard(engine.stack([r.hp for r in runs])))
    kernel = jax.tree.leaves(states['params'])[0]
    out['spec'] = str(kernel.sharding.spec)
    out['shards'] = sorted((s.device.id, s.data.shape[0]) for s in kernel.addressable_shards)
    # The batch axis: one model, data parallel over 8 devices, one epoch.
    out['all_reduce'], out['epoch_loss'] = t.one_epoch_loss()
    print('RESULT', json.dumps(out))
''')


def one_epoch_loss() -> tuple[bool, float]:
  """(whether the compiled epoch all-reduces, its mean loss) of one epoch of tiny_vae() as a single run."""
  config = tiny_vae()
  dataset = data.load(config.data)
  run = engine.make_run(config, dataset.shape)
  program = engine.Program([run], dataset)
  state = program.init(run.init_key[None], jax.numpy.ones(1))
  args = (state, dataset.x_train, dataset.x_test, None, 1, run.train_key[None], jax.tree.map(lambda x: x[None], run.hp))
  compiled = program.epoch.lower(*args).compile()
  return 'all-reduce' in compiled.as_text(), float(np.mean(compiled(*args)[1]['train']['loss']))


@pytest.fixture(scope='module')
def eight_devices(tmp_path_factory):
  """What the 8-fake-device subprocess saw (see _EIGHT_DEVICES)."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()  # and conftest's
  env = {**os.environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu',
         'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
  done = subprocess.run([sys.executable, '-c', _EIGHT_DEVICES, str(tmp_path_factory.mktemp('eight'))], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.split('RESULT ', 1)[1])


def test_eight_devices_one_model_each_same_numbers(eight_devices, sweep8):
  assert eight_devices['spec'] == str(jax.sharding.PartitionSpec('model'))
  assert eight_devices['shards'] == [[d, 1] for d in range(8)]  # (device id, models on it)
  assert any('8 models in one program on 8 device(s)' in line for line in eight_devices['lines'])
  _, one_device = sweep8
  for name, summary in one_device.items():
    _assert_same_numbers(eight_devices['summaries'][name], summary)


def test_data_parallel_single_model_same_loss(eight_devices):
  all_reduce, loss = one_epoch_loss()  # this process: one device, the plain program
  assert not all_reduce and parallel.data_mesh(64) is None
  assert eight_devices['all_reduce']  # 8 devices: gradients summed over the 8 batch shards
  np.testing.assert_allclose(eight_devices['epoch_loss'], loss, rtol=1e-5)


def test_model_mesh_uses_devices_that_divide_the_models():
  assert [parallel._largest_divisor_at_most(n, 8) for n in (8, 24, 7, 3, 12)] == [8, 8, 7, 3, 6]
  assert parallel.model_mesh(7).devices.size == 1
  with pytest.raises(ValueError, match='at least one model'):
    parallel.model_mesh(0)


def test_distributed_is_initialized_only_in_multi_process_environments(monkeypatch):
  assert not parallel.wants_distributed({})
  assert not parallel.wants_distributed({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1'})  # one submitit job
  assert parallel.wants_distributed({'SLURM_PROCID': '1', 'SLURM_NTASKS': '4'})
  assert parallel.wants_distributed({'TPU_WORKER_HOSTNAMES': 'host0,host1'})
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *args, **kwargs: calls.append(args))
  monkeypatch.setattr(parallel, '_job', None)
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '127.0.0.1:1234')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  monkeypatch.setenv('JAX_PROCESS_ID', '1')
  assert parallel.initialize_distributed()  # on CPUs and GPUs: independent processes, no jax.distributed client
  assert calls == [] and (parallel.process_index(), parallel.process_count()) == (1, 2)
  monkeypatch.setattr(parallel, '_job', None)
  monkeypatch.setenv('AELAB_JAX_DISTRIBUTED', '1')  # as on a multi-host TPU slice
  assert parallel.initialize_distributed()
  assert calls == [('127.0.0.1:1234', 2, 1)]
  assert parallel.job_from_environment({'SLURM_PROCID': '3', 'SLURM_NTASKS': '4'}) == (3, 4)
  with pytest.raises(parallel.DistributedError, match=r'SLURM_PROCID=4 must lie in \[0, SLURM_NTASKS=4\)'):
    parallel.job_from_environment({'SLURM_PROCID': '4', 'SLURM_NTASKS': '4'})


def test_main_runs_a_sweep_and_reports_bad_sweep_files(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('SWEEP = []\n')
  done = subprocess.run([sys.executable, '-m', 'aelab.main', '--config=configs/vae.py', f'--sweep={bad}',
                         f'--workdir={tmp_path / "w"}'], cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, 'PYTHONPATH': str(ROOT)})
  assert done.returncode != 0
  assert 'error: Sweep file' in done.stderr and 'defines no get_sweep' in done.stderr, done.stderr[-2000:]


def test_a_diverged_model_stops_alone_and_the_others_finish(tmp_path):
  runs = [{'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 1e30}]
  lines = []
  with pytest.raises(FloatingPointError, match=r'^1 runs diverged and stopped \(optimizer.learning_rate=1e\+30: The '
                     r'training loss became nan at epoch 1'):
    sweep.run_sweep(tiny_vae(), runs, str(tmp_path), log=lines.append)
  good, bad = (tmp_path / sweep.run_name(r) for r in runs)
  assert json.load(open(good / 'summary.json'))['epochs'] == 2
  assert not (bad / 'summary.json').exists()
  assert any('The training loss became' in line and str(bad) in line for line in lines), lines
  assert any('1/2 models' in line for line in lines), lines


# ---- issue 20, finding 9: sweeps ----

def test_the_same_config_in_any_override_order_is_one_run_and_close_floats_are_two():
  with pytest.raises(sweep.SweepError, match=r"same run more than once: \{'seed': 1, 'model.latent_dim': 8\} and "
                     r"\{'model.latent_dim': 8, 'seed': 1\} give the same config"):  # before: trained twice
    sweep.members(tiny_vae(), [{'seed': 1, 'model.latent_dim': 8}, {'model.latent_dim': 8, 'seed': 1}])
  with pytest.raises(sweep.SweepError, match='same run more than once'):  # 0 is the default seed
    sweep.members(tiny_vae(), [{}, {'seed': 0}])
  runs = sweep.members(tiny_vae(), [{'optimizer.learning_rate': 1e-3}, {'optimizer.learning_rate': 1.0000001e-3}])
  assert [m.name for m in runs] == ['optimizer.learning_rate=0.001', 'optimizer.learning_rate=0.0010000001']
  assert sweep.run_name({'vae.kl_weight': 4.0, 'seed': 1}) == 'vae.kl_weight=4,seed=1'  # short names kept


def test_every_groups_data_is_checked_before_the_first_group_trains(tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(engine, 'train_runs', lambda *args, **kwargs: trained.append(args) or [])
  runs = [{}, {'model.latent_dim': 3, 'data.name': 'npz', 'data.path': str(tmp_path / 'missing.npz')}]
  with pytest.raises(data.DataError, match='missing.npz does not exist'):
    sweep.run_sweep(tiny_vae(), runs, str(tmp_path / 'w'), log=lambda line: None)
  assert not trained and not (tmp_path / 'w').exists()  # before: group 1 trained first


def test_sweep_json_is_written_before_the_first_group_trains(tmp_path, monkeypatch):
  def stopped(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(sweep, 'train_group', stopped)
  runs = [{'seed': 0}, {'seed': 1}, {'model.latent_dim': 3}]
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(tiny_vae(), runs, str(tmp_path), log=lambda line: None)
  index = json.load(open(tmp_path / 'sweep.json'))
  assert [r['name'] for r in index] == ['seed=0', 'seed=1', 'model.latent_dim=3']
  assert all(r['summary'] is None for r in index)
