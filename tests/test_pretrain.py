"""Greedy layer-wise pretraining of stacked denoising autoencoders and supervised fine-tuning."""
import jax
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import data, nets, pretrain, train
from conftest import load_config


def _config(widths=(32, 16), epochs=3, steps=150):
  config = load_config('stacked_dae')
  config.data.update(max_train_examples=500, max_test_examples=300)
  config.pretrain.update(widths=widths, num_epochs=epochs)
  config.finetune.update(num_steps=steps, learning_rate=3e-3)
  return config


@pytest.fixture(scope='module')
def digits():
  return data.load(_config().data)


@pytest.fixture(scope='module')
def stack(digits):
  config = _config()
  return config, *pretrain.pretrain(config, digits.x_train, digits.x_test)


def test_each_layer_lowers_its_reconstruction_loss(stack):
  _, encoders, histories = stack
  assert [e['kernel'].shape for e in encoders] == [(64, 32), (32, 16)]
  for history in histories:
    recon = [h['test/recon'] for h in history]  # before training, then after each epoch
    assert len(recon) == 4 and all(b < a for a, b in zip(recon, recon[1:])), recon
    assert recon[-1] < 0.95 * recon[0], recon


def test_layer_two_is_trained_on_the_codes_of_layer_one(stack, digits):
  config, encoders, histories = stack
  code = lambda x, e: np.asarray(nets.activation('sigmoid')(x @ e['kernel'] + e['bias']))
  h_train, h_test = code(digits.x_train, encoders[0]), code(digits.x_test, encoders[0])
  run = train.Run(pretrain.layer_config(config, 1), pretrain.arrays_dataset(h_train, h_test, 'codes'))
  before = run.evaluate(run.init_state()['params'], h_test, run.hp)['recon']  # layer 2 before training
  np.testing.assert_allclose(histories[1][0]['test/recon'], float(before), rtol=1e-5)
  raw = run.evaluate(run.init_state()['params'], np.full_like(h_test, 0.5), run.hp)['recon']
  assert abs(float(raw) - float(before)) > 1e-3  # the check can tell other inputs apart


def test_finetuning_beats_chance_and_subsets_are_seeded(digits):
  config = _config(widths=(32,), epochs=2)
  rows = pretrain.compare(config, digits, [100])
  assert rows[0]['num_labels'] == 100
  assert rows[0]['pretrained_error'] < 0.5 and rows[0]['random_error'] < 0.5  # chance: 0.9
  idx = pretrain.labelled_subset(digits.y_train, 20, seed=3)
  assert len(idx) == 20 and len(np.unique(digits.y_train[idx])) == 10
  np.testing.assert_array_equal(idx, pretrain.labelled_subset(digits.y_train, 20, seed=3))
  assert len(pretrain.labelled_subset(digits.y_train, 0, seed=3)) == len(digits.y_train)


def test_init_classifier_uses_the_pretrained_layers():
  config = _config(widths=(8,))
  enc = [{'kernel': np.ones((5, 8), np.float32), 'bias': np.arange(8, dtype=np.float32)}]
  params = pretrain.init_classifier(config, jax.random.key(0), 5, 3, enc)
  np.testing.assert_array_equal(params['params']['dense_0']['bias'], np.arange(8))
  assert params['params']['dense_1']['kernel'].shape == (8, 3)
  with pytest.raises(ValueError, match='pretrained layer 0'):
    pretrain.init_classifier(config, jax.random.key(0), 6, 3, enc)


def test_errors_are_early_and_clear(digits):
  config = _config(widths=())
  with pytest.raises(config_lib.ConfigError, match='pretrain.widths'):
    pretrain.validate(config)
  config = _config()
  params = pretrain.init_classifier(config, jax.random.key(0), 64, 10)
  with pytest.raises(ValueError, match='label'):
    pretrain.finetune(config, params, digits.x_train, None, jax.random.key(0))
  unlabelled = pretrain.arrays_dataset(digits.x_train, digits.x_test, 'x')
  with pytest.raises(ValueError, match='labels'):
    pretrain.compare(config, unlabelled, [10])
