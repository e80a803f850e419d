"""Greedy layer-wise pretraining of stacked denoising autoencoders and supervised fine-tuning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import config as config_lib
from aelab import data
from aelab.train import engine, pretrain
from aelab.eval import metrics
from aelab.nn import nets
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


def _codes(x, encoder):
  """Layer codes as ``pretrain.pretrain`` computes them (sigmoid units, in one jitted call)."""
  code = jax.jit(lambda v: nets.activation('sigmoid')(v @ encoder['kernel'] + encoder['bias'][None]))
  return np.asarray(code(jnp.asarray(x)))


def _recon(config, params, x):
  """The ``test/recon`` of a layer's parameters on ``x`` (the family's eval, as in the history)."""
  run = engine.make_run(config, (x.shape[1],))
  evaluate = metrics.make_evaluate(run.family.eval, config.train.eval_batch_size)
  return float(evaluate(params, jnp.asarray(x), run.hp)['recon'])


def _initial_params(config, dim):
  """The parameters a layer starts from (``engine.fit`` initializes with the run's ``init_key``)."""
  run = engine.make_run(config, (dim,))
  return run.family.init(run.init_key, jnp.zeros((1, dim)))


def test_each_layer_lowers_its_reconstruction_loss(stack, digits):
  config, encoders, histories = stack
  assert [e['kernel'].shape for e in encoders] == [(64, 32), (32, 16)]
  inputs = [digits.x_test, _codes(digits.x_test, encoders[0])]
  for layer, (history, x_test) in enumerate(zip(histories, inputs)):
    assert [h['epoch'] for h in history] == [1, 2, 3]  # one record per epoch, none before training
    layer_config = pretrain.layer_config(config, layer)
    before = _recon(layer_config, _initial_params(layer_config, x_test.shape[1]), x_test)
    recon = [before] + [h['test/recon'] for h in history]  # before training, then after each epoch
    assert all(b < a for a, b in zip(recon, recon[1:])), recon
    assert recon[-1] < 0.95 * recon[0], recon


def test_layer_two_is_trained_on_the_codes_of_layer_one(stack, digits):
  config, encoders, histories = stack
  h_train, h_test = _codes(digits.x_train, encoders[0]), _codes(digits.x_test, encoders[0])
  layer_config = pretrain.layer_config(config, 1)
  run, params, history = pretrain.fit(layer_config, pretrain.arrays_dataset(h_train, h_test, 'codes', kind='image'))
  assert run.config.model.latent_dim == 16 and run.config.train.num_epochs == 3
  # Training layer 2 on the clean codes of layer 1 again gives the same encoder and the same history.
  np.testing.assert_allclose(params['params']['encoder']['mlp']['dense_0']['kernel'], encoders[1]['kernel'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose([h['test/recon'] for h in history], [h['test/recon'] for h in histories[1]], rtol=1e-5)
  after = _recon(layer_config, params, h_test)  # layer 2's test/recon is measured on the test codes
  np.testing.assert_allclose(histories[1][-1]['test/recon'], after, rtol=1e-5)
  raw = _recon(layer_config, params, np.full_like(h_test, 0.5))
  assert abs(raw - after) > 1e-3  # the check can tell other inputs apart


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
