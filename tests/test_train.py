"""End-to-end training: every config learns, runs are reproducible and resumable, NaNs stop cleanly."""
import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from aelab import train
from aelab.workdir import Workdir
from conftest import CONFIG_NAMES, load_config, small


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _main_metric(config):
  return 'test/neg_elbo' if config.model.name == 'vae' else 'test/recon'


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_each_config_learns_on_digits(name, tmp_path):
  config = small(load_config(name), epochs=4)
  summary = train.train_and_evaluate(config, str(tmp_path))
  history = _metrics(tmp_path)
  metric = _main_metric(config)
  assert len(history) == 4
  assert history[-1][metric] < 0.95 * history[0][metric], [r[metric] for r in history]
  assert summary[metric] == history[-1][metric]


def test_outputs_of_a_run(tmp_path):
  config = load_config('dae')
  config.train.update(num_epochs=2, figures_every=1)
  train.train_and_evaluate(config, str(tmp_path))
  names = set(os.listdir(tmp_path))
  assert {'config.json', 'metrics.jsonl', 'summary.json', 'checkpoints', 'tensorboard', 'figures'} <= names
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  figures = set(os.listdir(tmp_path / 'figures'))
  assert {'reconstructions_epoch001.png', 'reconstructions_epoch002.png', 'learning_curves.png'} <= figures
  summary = json.load(open(tmp_path / 'summary.json'))
  assert summary['test/recon_mse'] > 0 and summary['test/recon_mse_clean_input'] > 0
  assert json.load(open(tmp_path / 'config.json'))['corruption']['name'] == 'gaussian'


def test_vae_writes_samples_and_elbo_parts(tmp_path):
  summary = train.train_and_evaluate(small(load_config('vae'), epochs=1), str(tmp_path))
  assert os.path.exists(tmp_path / 'figures' / 'samples.png')
  np.testing.assert_allclose(summary['test/neg_elbo'], summary['test/recon_bce'] + summary['test/kl'], rtol=1e-5)


def test_same_seed_same_numbers_other_seed_different(tmp_path):
  def run(seed, sub):
    config = small(load_config('vae'), epochs=2)
    config.seed = seed
    return train.train_and_evaluate(config, str(tmp_path / sub))['test/neg_elbo']

  first, again, other = run(0, 'a'), run(0, 'b'), run(1, 'c')
  assert first == again
  assert first != other


class _Interrupt(Exception):
  pass


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
  config = small(load_config('dae'), epochs=4)
  config.optimizer.schedule = 'cosine'
  uninterrupted = train.train_and_evaluate(config, str(tmp_path / 'full'))

  save = Workdir.save

  def save_then_crash(self, epoch, state):
    save(self, epoch, state)
    if epoch == 2:
      raise _Interrupt()

  monkeypatch.setattr(Workdir, 'save', save_then_crash)
  with pytest.raises(_Interrupt):
    train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  monkeypatch.setattr(Workdir, 'save', save)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  for key, value in uninterrupted.items():
    if key.startswith(('train/', 'test/')):
      assert resumed[key] == value, key
  assert [r['epoch'] for r in _metrics(tmp_path / 'resumed')] == [1, 2, 3, 4]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = small(load_config('deep_ae'), epochs=2)
  config.optimizer.update(name='sgd', learning_rate=0.01)
  train.train_and_evaluate(config, str(tmp_path))
  config.train.num_epochs = 4
  config.optimizer.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match='epoch 3.*last good checkpoint \\(epoch 2\\)'):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  assert [r['epoch'] for r in _metrics(tmp_path)] == [1, 2]


def test_sparsity_penalty_pulls_mean_activation_to_target(tmp_path):
  def mean_activation(weight, sub):
    config = small(load_config('sparse'), epochs=4)
    config.penalty.weight = weight
    return train.train_and_evaluate(config, str(tmp_path / sub))['test/code_mean_abs']

  free, penalized = mean_activation(0.0, 'free'), mean_activation(3.0, 'penalized')
  target = load_config('sparse').penalty.target
  assert abs(penalized - target) < 0.5 * abs(free - target), (free, penalized, target)


def test_denoising_vae_and_denoising_sparse_ae_train(tmp_path):
  vae = small(load_config('vae'), epochs=2)
  vae.corruption.update(name='masking', rate=0.25)
  summary = train.train_and_evaluate(vae, str(tmp_path / 'dvae'))
  assert summary['test/recon_mse_clean_input'] < summary['test/recon_mse']
  sparse = small(load_config('sparse'), epochs=2)
  sparse.corruption.update(name='salt_and_pepper', rate=0.1)
  assert np.isfinite(train.train_and_evaluate(sparse, str(tmp_path / 'dsae'))['train/penalty'])


def test_optimizers_and_schedules_train(tmp_path):
  for name, schedule in (('adamw', 'warmup_cosine'), ('sgd', 'cosine'), ('adadelta', 'constant')):
    config = small(load_config('ae'), epochs=2)
    config.optimizer.update(name=name, schedule=schedule, warmup_steps=5,
                            learning_rate=1.0 if name == 'adadelta' else 1e-2)
    train.train_and_evaluate(config, str(tmp_path / name))
    history = _metrics(tmp_path / name)
    assert history[-1]['test/recon'] < history[0]['test/recon'], name


def test_tfds_source_trains_under_mock_data(tmp_path):
  config = small(load_config('vae', 'mnist'), epochs=2)
  config.train.batch_size = 16
  with tfds.testing.mock_data(num_examples=96, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['test/neg_elbo'])
  assert summary['test/neg_elbo'] > 0


def test_real_mnist_vae_and_dae(tmp_path, mnist_dir):
  vae = small(load_config('vae', f'idx={mnist_dir}'), epochs=3)
  summary = train.train_and_evaluate(vae, str(tmp_path / 'vae'))
  assert summary['test/neg_elbo'] < 135  # 127.5 seen after 3 epochs; ~550 nats at initialization
  dae = small(load_config('dae', f'idx={mnist_dir}'), epochs=3)
  summary = train.train_and_evaluate(dae, str(tmp_path / 'dae'))
  assert summary['test/recon_mse'] < 0.04


def test_train_epoch_is_one_compiled_program():
  """The scanned epoch compiles once and is reused: a second epoch adds no compilation."""
  config = load_config('ae')
  dataset = train.data.load(config.data)
  run = train.Run(config, dataset)
  state = run.init_state()
  x = jax.numpy.asarray(dataset.x_train)
  for epoch in (1, 2):
    state, _ = run.train_epoch(state, x, jax.random.key(epoch), run.hp)
  assert run.train_epoch._cache_size() == 1


def test_workdir_of_another_model_is_refused_and_kept(tmp_path):
  config = small(load_config('ae'), epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  other = small(load_config('ae'), epochs=2)
  other.model.hidden = (64,)
  with pytest.raises(train.config_lib.ConfigError, match=r'model.hidden: \[128\] -> \[64\]'):
    train.train_and_evaluate(other, str(tmp_path))
  assert json.load(open(tmp_path / 'config.json'))['model']['hidden'] == [128]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']
