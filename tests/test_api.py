"""aelab.api: ``aelab.load(workdir)`` of a trained run, numpy in and numpy out."""
import shutil

import jax
import numpy as np
import pytest

import aelab
from aelab import api, data
from aelab.train import engine
from aelab.nn import losses
from conftest import load_config, small


EPOCHS = 2


def _train(tmp_path_factory, name):
  config = small(load_config(name), epochs=EPOCHS)
  config.data.max_train_examples = 256
  workdir = tmp_path_factory.mktemp(name)
  summary = engine.train_and_evaluate(config, str(workdir))
  return str(workdir), summary, data.load(config.data)


@pytest.fixture(scope='module')
def vae_run(tmp_path_factory):
  return _train(tmp_path_factory, 'vae')


@pytest.fixture(scope='module')
def ae_run(tmp_path_factory):
  return _train(tmp_path_factory, 'ae')


@pytest.mark.parametrize('run', ['ae_run', 'vae_run'])
def test_load_gives_the_trained_model(run, request):
  workdir, summary, dataset = request.getfixturevalue(run)
  trained = aelab.load(workdir)
  assert isinstance(trained, api.Trained) and trained.epoch == EPOCHS
  assert trained.config.model.name == run[:-4] and trained.data_shape == dataset.shape == (8, 8, 1)
  x = dataset.x_test
  z = trained.encode(x)
  latent_dim = trained.config.model.latent_dim
  assert isinstance(z, np.ndarray) and z.shape == (len(x), latent_dim) and z.dtype == np.float32
  x_hat = trained.reconstruct(x)
  assert isinstance(x_hat, np.ndarray) and x_hat.shape == x.shape
  decoded = trained.decode(z)
  assert isinstance(decoded, np.ndarray) and decoded.shape == x.shape
  np.testing.assert_allclose(x_hat, decoded, rtol=1e-5, atol=1e-6)
  # The parameters are those the run ended with: the reconstruction error is the summary's (last epoch).
  np.testing.assert_allclose(np.mean(losses.mse(x_hat, x)), summary['test/recon_mse'], rtol=1e-4)
  np.testing.assert_allclose(trained.encode(x[:5].tolist()), z[:5], rtol=1e-5, atol=1e-6)  # lists, any number
  fresh = jax.eval_shape(trained.family.init, jax.random.key(0), x[:1])
  assert jax.tree.structure(trained.params) == jax.tree.structure(fresh)


def test_sample_of_a_vae_and_none_for_an_autoencoder(vae_run, ae_run):
  trained = aelab.load(vae_run[0])
  samples = trained.sample(6)
  assert isinstance(samples, np.ndarray) and samples.shape == (6, 64)
  assert samples.min() >= 0.0 and samples.max() <= 1.0  # Bernoulli means
  np.testing.assert_array_equal(trained.sample(6, seed=0), samples)
  assert not np.allclose(trained.sample(6, seed=1), samples)
  assert aelab.load(ae_run[0]).sample is None


def test_a_workdir_without_a_checkpoint_raises(ae_run, tmp_path):
  with pytest.raises(FileNotFoundError, match='config.json'):
    aelab.load(str(tmp_path))
  shutil.copy(f'{ae_run[0]}/config.json', tmp_path / 'config.json')
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    aelab.load(str(tmp_path))
