"""The engine end to end: every config learns, runs are reproducible and resumable (after a crash or a
SIGTERM), NaNs stop cleanly, one compiled program per epoch, compilations cached across runs."""
import json
import os
import signal
import threading

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aelab.train import checkpoints, engine, hooks, writers

from aelab import config as config_lib, data
from conftest import CONFIG_NAMES, load_config, small


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _main_metric(config):
  return 'test/neg_elbo' if config.model.name == 'vae' else 'test/recon'


def _same_metrics(a: dict, b: dict) -> None:
  keys = [k for k in a if k.startswith(('train/', 'test/'))]
  assert keys and all(a[k] == b[k] for k in keys), {k: (a[k], b[k]) for k in keys if a[k] != b[k]}


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_each_config_learns_on_digits(name, tmp_path):
  config = small(load_config(name), epochs=4)
  summary = engine.train_and_evaluate(config, str(tmp_path), log=lambda line: None)
  history = _metrics(tmp_path)
  metric = _main_metric(config)
  assert len(history) == 4
  assert history[-1][metric] < 0.95 * history[0][metric], [r[metric] for r in history]
  assert summary[metric] == history[-1][metric]


def test_outputs_of_a_run(tmp_path):
  config = load_config('dae')
  config.train.update(num_epochs=2, figures_every=1)
  summary = engine.train_and_evaluate(config, str(tmp_path))
  names = set(os.listdir(tmp_path))
  assert {'config.json', 'metrics.jsonl', 'summary.json', 'checkpoints', 'checkpoint.json', 'tensorboard',
          'figures'} <= names
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']  # checkpoint_every=5: the last epoch only
  figures = set(os.listdir(tmp_path / 'figures'))
  assert {'reconstructions_epoch001.png', 'reconstructions_epoch002.png', 'learning_curves.png',
          'reconstructions_over_epochs.png', 'interpolation.png', 'traversal.png'} <= figures
  assert summary['test/recon_mse'] > 0 and summary['test/recon_mse_clean_input'] > 0
  assert json.load(open(tmp_path / 'config.json'))['corruption']['name'] == 'gaussian'
  parts = ('compile', 'epochs', 'checkpoints', 'final_eval', 'figures')
  assert all(summary[f'time_{p}_s'] >= 0 for p in parts), summary
  assert summary['wall_time_s'] > summary['time_epochs_s'] + summary['time_compile_s']


def test_vae_writes_samples_and_elbo_parts(tmp_path):
  config = small(load_config('vae'), epochs=1)
  config.train.figures_every = 1
  summary = engine.train_and_evaluate(config, str(tmp_path))
  assert os.path.exists(tmp_path / 'figures' / 'samples.png')
  np.testing.assert_allclose(summary['test/neg_elbo'], summary['test/recon_bce'] + summary['test/kl'], rtol=1e-5)
  assert summary['test/nll_k'] == 100 and summary['test/nll'] < summary['test/neg_elbo']


def test_same_seed_same_numbers_other_seed_different(tmp_path):
  def run(seed, sub):
    config = small(load_config('vae'), epochs=2)
    config.seed = seed
    return engine.train_and_evaluate(config, str(tmp_path / sub))['test/neg_elbo']

  first, again, other = run(0, 'a'), run(0, 'b'), run(1, 'c')
  assert first == again
  assert first != other


class _Crash(Exception):
  pass


def _resumable_config():
  config = small(load_config('dae'), epochs=4)
  config.optimizer.schedule = 'cosine'
  config.train.checkpoint_every = 3
  return config


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  path = tmp_path_factory.mktemp('full')
  return engine.train_and_evaluate(_resumable_config(), str(path)), path


def test_resume_after_a_crash_equals_uninterrupted(tmp_path, monkeypatch, uninterrupted):
  """Killed after epoch 4's metrics but before its checkpoint: the rerun resumes from epoch 3."""
  config = _resumable_config()
  save = checkpoints.GroupCheckpoints.save

  def crash_at_the_end(self, epoch, state, pinned=frozenset(), **items):
    if epoch == 4:
      raise _Crash()
    save(self, epoch, state, pinned, **items)

  monkeypatch.setattr(checkpoints.GroupCheckpoints, 'save', crash_at_the_end)
  with pytest.raises(_Crash):
    engine.train_and_evaluate(config, str(tmp_path))
  monkeypatch.undo()
  assert [r['epoch'] for r in _metrics(tmp_path)] == [1, 2, 3, 4]
  lines = []
  resumed = engine.train_and_evaluate(config, str(tmp_path), log=lines.append)
  assert lines[0].startswith('Resuming from the checkpoint of epoch 3'), lines
  _same_metrics(resumed, uninterrupted[0])
  assert [r['epoch'] for r in _metrics(tmp_path)] == [1, 2, 3, 4]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason='signals need the main thread')
def test_sigterm_checkpoints_stops_and_resumes_to_the_same_numbers(tmp_path, monkeypatch, uninterrupted):
  config = _resumable_config()
  write = writers.AsyncWriter.write_scalars

  def write_then_sigterm(self, step, scalars):
    write(self, step, scalars)
    if scalars['epoch'] == 2:
      os.kill(os.getpid(), signal.SIGTERM)  # as SLURM does before preempting a job

  monkeypatch.setattr(writers.AsyncWriter, 'write_scalars', write_then_sigterm)
  with pytest.raises(engine.Interrupted, match='SIGTERM after epoch 2'):
    engine.train_and_evaluate(config, str(tmp_path))
  monkeypatch.undo()
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']  # epoch 2 is not on the schedule (every 3)
  resumed = engine.train_and_evaluate(config, str(tmp_path))
  _same_metrics(resumed, uninterrupted[0])
  assert [r['epoch'] for r in _metrics(tmp_path)] == [1, 2, 3, 4]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '4']


def test_finished_run_is_reported_without_training_again(uninterrupted):
  summary, path = uninterrupted
  lines = []
  assert engine.train_and_evaluate(_resumable_config(), str(path), log=lines.append) == summary
  assert not lines


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  config = small(load_config('deep_ae'), epochs=2)
  config.optimizer.update(name='sgd', learning_rate=0.01)
  engine.train_and_evaluate(config, str(tmp_path))
  config.train.num_epochs = 4  # continues the run (another learning rate would be another run: refused)
  guard = hooks.DivergenceGuard.__call__

  def nan_in_epoch_3(self, epoch, outputs, alive):
    if epoch == 3:
      outputs = [{**o, 'train': {**o['train'], 'loss': np.full_like(o['train']['loss'], np.nan)}} for o in outputs]
    return guard(self, epoch, outputs, alive)

  monkeypatch.setattr(hooks.DivergenceGuard, '__call__', nan_in_epoch_3)
  with pytest.raises(FloatingPointError, match='epoch 3.*last good checkpoint \\(epoch 2\\)'):
    engine.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2']
  assert [r['epoch'] for r in _metrics(tmp_path)] == [1, 2]


def test_sparsity_penalty_pulls_mean_activation_to_target(tmp_path):
  def mean_activation(weight, sub):
    config = small(load_config('sparse'), epochs=4)
    config.penalty.weight = weight
    return engine.train_and_evaluate(config, str(tmp_path / sub))['test/code_mean_abs']

  free, penalized = mean_activation(0.0, 'free'), mean_activation(3.0, 'penalized')
  target = load_config('sparse').penalty.target
  assert abs(penalized - target) < 0.5 * abs(free - target), (free, penalized, target)


def test_denoising_vae_and_denoising_sparse_ae_train(tmp_path):
  vae = small(load_config('vae'), epochs=2)
  vae.corruption.update(name='masking', rate=0.25)
  summary = engine.train_and_evaluate(vae, str(tmp_path / 'dvae'))
  assert summary['test/recon_mse_clean_input'] < summary['test/recon_mse']
  sparse = small(load_config('sparse'), epochs=2)
  sparse.corruption.update(name='salt_and_pepper', rate=0.1)
  assert np.isfinite(engine.train_and_evaluate(sparse, str(tmp_path / 'dsae'))['train/penalty'])


def test_optimizers_and_schedules_train(tmp_path):
  for name, schedule in (('adamw', 'warmup_cosine'), ('sgd', 'cosine'), ('adadelta', 'constant')):
    config = small(load_config('ae'), epochs=2)
    config.optimizer.update(name=name, schedule=schedule, warmup_steps=5,
                            learning_rate=1.0 if name == 'adadelta' else 1e-2)
    engine.train_and_evaluate(config, str(tmp_path / name))
    history = _metrics(tmp_path / name)
    assert history[-1]['test/recon'] < history[0]['test/recon'], name


def test_tfds_source_trains_under_mock_data(tmp_path):
  config = small(load_config('vae', 'mnist'), epochs=2)
  config.train.batch_size = 16
  with tfds.testing.mock_data(num_examples=96, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = engine.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['test/neg_elbo'])
  assert summary['test/neg_elbo'] > 0


def test_real_mnist_vae_and_dae(tmp_path, mnist_dir):
  vae = small(load_config('vae', f'idx={mnist_dir}'), epochs=1)
  vae.eval.final_metrics = False
  summary = engine.train_and_evaluate(vae, str(tmp_path / 'vae'))
  assert summary['test/neg_elbo'] < 170  # 158.3 seen after 1 epoch (137.4 after 2); ~550 nats at initialization
  dae = small(load_config('dae', f'idx={mnist_dir}'), epochs=1)
  dae.eval.final_metrics = False
  summary = engine.train_and_evaluate(dae, str(tmp_path / 'dae'))
  assert summary['test/recon_mse'] < 0.07  # 0.0595 seen after 1 epoch (0.0435 after 2); 0.23 at initialization


def test_one_epoch_is_one_compiled_program():
  """The scanned epoch (training, test metrics, figure reconstructions) compiles once and is reused."""
  config = small(load_config('ae'))
  dataset = data.load(config.data)
  run = engine.make_run(config, dataset.shape)
  program = engine.Program([run], dataset)
  state = program.init(run.init_key[None], jax.numpy.ones(1))
  args = (jax.numpy.asarray(dataset.x_train), jax.numpy.asarray(dataset.x_test), None)
  for epoch in (1, 2):
    state, out = program.epoch(state, *args, epoch, run.train_key[None], jax.tree.map(lambda x: x[None], run.hp))
  assert program.epoch._cache_size() == 1
  assert out['train']['loss'].shape == (1, len(dataset.x_train) // config.train.batch_size)
  assert set(out['test']) >= {'recon', 'recon_mse'} and out['test']['recon'].shape == (1,)


def test_second_run_of_a_config_compiles_nothing_new(tmp_path):
  """The persistent compilation cache: the same config again adds no cache entry; the cache can be off."""
  config = small(load_config('ae'), epochs=1)
  config.train.compilation_cache_dir = str(tmp_path / 'cache')
  engine.train_and_evaluate(config, str(tmp_path / 'first'))
  entries = set(os.listdir(tmp_path / 'cache'))
  assert any(e.startswith('jit_epoch') for e in entries), entries
  engine.train_and_evaluate(config, str(tmp_path / 'second'))
  assert set(os.listdir(tmp_path / 'cache')) == entries
  config.train.compilation_cache = False
  config.model.hidden = (64,)  # another epoch program, not written to the cache
  engine.train_and_evaluate(config, str(tmp_path / 'off'))
  assert set(os.listdir(tmp_path / 'cache')) == entries


def test_workdir_of_another_model_is_refused_and_kept(tmp_path):
  config = small(load_config('ae'), epochs=1)
  engine.train_and_evaluate(config, str(tmp_path))
  other = small(load_config('ae'), epochs=2)
  other.model.hidden = (64,)
  with pytest.raises(config_lib.ConfigError, match=r'model.hidden: \[128\] -> \[64\]'):
    engine.train_and_evaluate(other, str(tmp_path))
  assert json.load(open(tmp_path / 'config.json'))['model']['hidden'] == [128]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']


def test_fit_trains_in_memory_without_a_workdir(tmp_path):
  config = small(load_config('ae'), epochs=3)
  dataset = data.load(config.data)
  run, params, history = engine.fit(config, dataset)
  assert [r['epoch'] for r in history] == [1, 2, 3]
  assert history[-1]['test/recon'] < history[0]['test/recon']
  z = run.family.encode(params, jax.numpy.asarray(dataset.x_test[:5]))
  assert z.shape == (5, config.model.latent_dim)


def _epoch_out(loss: float) -> dict:
  return {'train': {'loss': np.array([0.5, loss])}, 'test': {'recon': 0.1}, 'param_max_abs': 1.0}


def test_hooks_run_on_their_schedule_at_the_last_epoch_and_checkpoint_when_the_loop_stops():
  class Count(hooks.Hook):
    def __init__(self, *args):
      super().__init__(*args)
      self.epochs = []

    def apply(self, end):
      self.epochs.append(end.epoch)

  count = Count(3, 7)
  ends = [hooks.EpochEnd(e, 10 * e, None, [], [], np.ones(1, bool), 0.1) for e in range(1, 8)]
  assert [count(end) for end in ends] == [False, False, True, False, False, True, True]
  assert count.epochs == [3, 6, 7]
  checkpoint = hooks.Checkpoint.__new__(hooks.Checkpoint)
  hooks.Hook.__init__(checkpoint, 5, 30)
  assert not checkpoint.should_trigger(ends[1])
  assert checkpoint.should_trigger(hooks.EpochEnd(2, 20, None, [], [], np.ones(1, bool), 0.1, stop=True))


def test_the_divergence_guard_stops_a_model_of_a_group_and_raises_for_a_single_run():
  lines, pinned, waited = [], set(), []
  guard = hooks.DivergenceGuard(['a', 'b'], pinned, lambda: 4, lambda: waited.append(1), lines.append)
  alive = np.ones(2, bool)
  assert guard(5, [_epoch_out(0.4), _epoch_out(np.nan)], alive) == [1]
  assert alive.tolist() == [True, False] and pinned == {4} and not waited
  assert lines == ['b: The training loss became nan at epoch 5, step 2 of 2; stopped without saving this epoch '
                   '(the last good checkpoint (epoch 4) is kept). Lower optimizer.learning_rate, check the data, or '
                   'pick another likelihood, in a new --workdir (a workdir is one run).']
  single = hooks.DivergenceGuard(['a'], set(), lambda: 0, lambda: waited.append(1), lines.append)
  with pytest.raises(FloatingPointError, match=r'step 2 of 2; stopped without saving this epoch \(no checkpoint yet\)'):
    single(1, [_epoch_out(np.inf)], np.ones(1, bool))
  assert waited == [1]


def test_the_progress_line_of_a_group_shows_the_range_over_live_models():
  records = [{'train/loss': 0.5, 'test/recon': 2.0}, {'train/loss': 0.25, 'test/recon': 1.0}, {'train/loss': 9.0}]
  line = hooks.progress_line('g ', 3, 10, records, np.array([True, True, False]), 1234.5, 2.0)
  assert line == ('g epoch 3/10 | 2/3 models | train/loss 0.25..0.5 | test/recon 1..2 | 1,234 model-examples/s | '
                  'ETA 00:00:14')


def test_the_programs_compiled_ahead_are_the_ones_used(tmp_path, monkeypatch):
  """The init, epoch and final programs compile together (program.Ahead) for the state init will give; each
  one handed out must be that compilation, not a second one for arguments it was not lowered for."""
  from aelab.train import program as program_lib
  used, original = [], program_lib.Ahead.get

  def get(self, name, *args):
    pending = self._compiled.get(name)
    used.append((name, pending is not None and program_lib.signature(args) == pending[1]))
    return original(self, name, *args)

  monkeypatch.setattr(program_lib.Ahead, 'get', get)
  config = small(load_config('vae'), epochs=2)
  config.eval.final_metrics = True
  engine.train_and_evaluate(config, str(tmp_path / 'fresh'), log=lambda line: None)
  assert used == [('init', True), ('epoch', True), ('final', True)]


@pytest.mark.parametrize('name', ['dae', 'vae', 'conv_vae', 'vqvae'])
def test_init_compiled_for_speed_gives_the_same_parameters_bit_for_bit(name):
  """compiler.ONCE (the init program's options, for a faster cold start) must not change a single bit
  of the initial state: every documented number starts from it."""
  import jax.numpy as jnp  # noqa: PLC0415
  from aelab.nn import compiler  # noqa: PLC0415
  from aelab.train import program as program_lib  # noqa: PLC0415
  config = load_config(name)
  dataset = data.load(config.data)
  run = program_lib.make_run(config, dataset.shape, name)
  init_state, _ = program_lib.make_train_step(run, 10)
  x_1xD = jnp.zeros((1, dataset.train.shape[1]))
  lowered = jax.jit(lambda key: init_state(key, x_1xD)).lower(run.init_key)
  default = lowered.compile(compiler.DEFAULT)(run.init_key)  # XLA's defaults (conftest sets others)
  fast = lowered.compile(compiler.ONCE)(run.init_key)
  for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(fast), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('name', ['vae', 'conv_vae'])  # dense and convolutional nets; samples of a prior
def test_final_program_compiled_for_speed_gives_the_same_outputs_bit_for_bit(name):
  """compiler.ONCE (XLA's older fusion emitters for the end-of-training program, for a faster cold start) must
  not change a single bit of what it computes (the final figures' arrays and metrics), on trained-like
  parameters (the init's, moved by a random step so that no weight is at its initial value)."""
  from aelab.nn import compiler  # noqa: PLC0415
  from aelab.train import program as program_lib  # noqa: PLC0415
  config = load_config(name)
  dataset = data.load(config.data)
  run = program_lib.make_run(config, dataset.shape, name)
  p = program_lib.Program([run], dataset)
  state = p.init(run.init_key[None], jax.numpy.ones(1))
  leaves, treedef = jax.tree.flatten(state['params'])
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(treedef, [x + 0.01 * jax.random.normal(k, x.shape, x.dtype)
                                        for x, k in zip(leaves, keys, strict=True)])
  lowered = p.final.lower(params, dataset.test)
  default = lowered.compile(compiler.DEFAULT)(params, dataset.test)
  fast = lowered.compile(compiler.ONCE)(params, dataset.test)
  assert jax.tree.leaves(default)
  for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(fast), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
