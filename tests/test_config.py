"""Config args, validation errors, and the command line rejecting bad overrides before training."""
import os
import subprocess
import sys

import numpy as np
import pytest

from aelab import config as aelab_config
from aelab import data
from aelab.train import engine
from conftest import CONFIG_NAMES, ROOT, load_config, small

NEW_CONFIGS = ('beta_vae', 'iwae', 'conv_vae', 'aae', 'cae')  # the configs besides conftest.CONFIG_NAMES


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_config_is_valid(name):
  aelab_config.validate(load_config(name))
  aelab_config.validate(load_config(name, 'mnist'))


def test_config_arg_picks_the_data():
  assert load_config('dae').data.name == 'digits'
  idx = load_config('dae', 'idx=../shared/data/mnist')
  assert (idx.data.name, idx.data.path) == ('idx', '../shared/data/mnist')
  assert load_config('vae', 'fashion_mnist').data.name == 'fashion_mnist'
  assert load_config('dae', 'mnist').model.hidden == (512, 128)
  with pytest.raises(aelab_config.ConfigError, match='needs a path'):
    load_config('ae', 'npz')
  with pytest.raises(aelab_config.ConfigError, match='only'):
    load_config('ae', 'digits=foo')


@pytest.mark.parametrize('field, value, message', [
    ('model.name', 'transformer', "model.name='transformer' is not valid"),
    ('corruption.name', 'blur', 'corruption.name'),
    ('corruption.rate', 1.5, r'corruption.rate=1.5 must lie in \[0, 1\]'),
    ('corruption.std', -0.1, 'corruption.std'),
    ('penalty.target', 0.0, r'must lie in \(0, 1\)'),
    ('penalty.name', 'kl_sparsity', 'code_activation=sigmoid'),
    ('model.activation', 'swishy', 'model.activation'),
    ('model.likelihood', 'poisson', 'model.likelihood'),
    ('model.hidden', (512, 0), 'positive integers'),
    ('model.latent_dim', 0, 'model.latent_dim'),
    ('optimizer.name', 'lbfgs', 'optimizer.name'),
    ('optimizer.learning_rate', -1.0, 'learning_rate'),
    ('optimizer.schedule', 'step', 'optimizer.schedule'),
    ('data.binarize', 'yes', 'data.binarize'),
    ('data.test_fraction', 1.0, 'data.test_fraction'),
    ('train.batch_size', 0, 'train.batch_size'),
    ('train.num_epochs', 0, 'train.num_epochs'),
])
def test_invalid_values_raise_config_error(field, value, message):
  config = load_config('ae')
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(aelab_config.ConfigError, match=message):
    aelab_config.validate(config)


def test_generative_config_errors_name_the_field():
  cases = {'vae.num_samples': 0, 'model.net': 'rnn', 'vae.free_bits': -1.0, 'eval.nll_samples': 0}
  for field, value in cases.items():
    config = load_config('vae')
    section, name = field.split('.')
    config[section][name] = value
    with pytest.raises(aelab_config.ConfigError, match=field.replace('.', r'\.')):
      aelab_config.validate(config)
  config = load_config('iwae')
  config.vae.free_bits = 0.5
  with pytest.raises(aelab_config.ConfigError, match='free_bits'):
    aelab_config.validate(config)


@pytest.mark.parametrize('name', NEW_CONFIGS)
def test_new_configs_validate_for_every_data_arg(name):
  for arg in (None, 'mnist', 'idx=some/dir'):
    config = load_config(name, arg)
    aelab_config.validate(config)
    assert config.data.name == (arg or 'digits').split('=')[0]


def test_aae_on_a_source_with_ten_latents_takes_a_gaussian_prior():
  """shapes2d sets Locatello et al.'s 10 latents; the AAE's circle of Gaussians is 2-D (it failed validation)."""
  config = load_config('aae', 'shapes2d')
  aelab_config.validate(config)
  assert (config.model.latent_dim, config.aae.prior) == (10, 'gaussian')
  assert load_config('aae').aae.prior == 'mixture'


def test_vae_needs_a_normalized_likelihood():
  config = load_config('vae')
  config.model.likelihood = 'mse'
  with pytest.raises(aelab_config.ConfigError, match='normalized likelihood'):
    aelab_config.validate(config)


def test_data_dependent_errors_before_training(tmp_path):
  config = small(load_config('ae'))
  config.train.batch_size = 5000
  with pytest.raises(aelab_config.ConfigError, match='larger than the 1438 training examples'):
    engine.train_and_evaluate(config, str(tmp_path / 'a'))
  assert not os.path.exists(tmp_path / 'a')  # nothing written before the check
  np.savez(tmp_path / 'tab.npz', x=np.random.default_rng(0).normal(size=(50, 4)))
  config = small(load_config('deep_ae', f'npz={tmp_path / "tab.npz"}'))
  with pytest.raises(aelab_config.ConfigError, match='likelihood=mse'):
    engine.train_and_evaluate(config, str(tmp_path / 'b'))


def test_csv_config_trains_on_tabular_features(tmp_path):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 18)) + 0.1 * rng.normal(size=(200, 18))
  np.savetxt(tmp_path / 'purchases.csv', features, delimiter=',', header=','.join(f'f{i}' for i in range(18)),
             comments='')
  config = small(load_config('dae', f'csv={tmp_path / "purchases.csv"}'), epochs=3)
  config.model.latent_dim = 3
  summary = engine.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['test/recon_mse_clean_input'] < 1.0  # standardized features: predicting 0 gives ~1


def _main(*args, cwd=ROOT):
  return subprocess.run([sys.executable, '-m', 'aelab.main', *args], cwd=cwd, capture_output=True, text=True,
                        timeout=120)


def test_command_line_rejects_unknown_field_and_bad_value(tmp_path):
  unknown = _main('--config=configs/dae.py', '--config.model.widths=3', f'--workdir={tmp_path}/a')
  assert unknown.returncode != 0 and 'widths' in unknown.stderr
  bad = _main('--config=configs/dae.py', '--config.corruption.name=blur', f'--workdir={tmp_path}/b')
  assert bad.returncode != 0
  assert "corruption.name='blur' is not valid" in bad.stderr
  assert 'Traceback' not in bad.stderr
  assert not os.path.exists(tmp_path / 'b')


def test_command_line_override_reaches_the_run(tmp_path):
  result = _main('--config=configs/ae.py', '--config.train.num_epochs=1', '--config.model.hidden=(32,)',
                 '--config.train.figures_every=0', f'--workdir={tmp_path}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'epoch 1/1' in result.stdout
  config = data.ml_collections.ConfigDict(__import__('json').load(open(tmp_path / 'config.json')))
  assert tuple(config.model.hidden) == (32,) and config.train.num_epochs == 1


@pytest.mark.parametrize('name, field, value, message', [
    ('vae', 'penalty.name', 'contractive', 'penalty.name=contractive is not defined for model.name=vae'),
    ('beta_tcvae', 'vae.capacity_weight', 1.0, r'vae.capacity_weight > 0 .* not of model.name=beta_tcvae'),
    ('beta_tcvae', 'beta_tcvae.tc_weight', -1.0, 'beta_tcvae.tc_weight=-1.0'),
    ('dip_vae', 'dip_vae.dip_type', 'iii', r"dip_vae.dip_type \(DIP-VAE-I or -II\)='iii' is not valid"),
    ('factor_vae', 'factor_vae.disc_hidden', (0,), 'factor_vae.disc_hidden'),
    ('factor_vae', 'model.likelihood', 'mse', 'normalized likelihood'),  # the VAE's check, by BUILDS_ON
    ('aae', 'aae.prior', 'uniform', 'aae.prior'),
    ('vqvae', 'vqvae.codebook_ema', 1.0, 'vqvae.codebook_ema'),
    ('sae_topk', 'sae.activation', 'gelu', 'sae.activation'),
])
def test_each_family_validates_its_own_section(name, field, value, message):
  config = load_config(name)
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(aelab_config.ConfigError, match=message):
    aelab_config.validate(config)


def test_tabular_data_gives_families_that_need_a_density_a_gaussian_likelihood():
  assert load_config('beta_tcvae', 'csv=x.csv').model.likelihood == 'gaussian'  # built on the VAE
  assert load_config('dae', 'csv=x.csv').model.likelihood == 'mse'
