"""aelab.api: ``aelab.load(workdir)`` of a trained run, numpy in and numpy out."""
import re
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
  autoencoder = aelab.load(ae_run[0])
  assert trained.has_prior and not autoencoder.has_prior
  with pytest.raises(api.NoPriorError, match=r"^run.sample: model.name='ae' has no prior p\(z\) to sample from"):
    autoencoder.sample(16, seed=0)  # before: TypeError: 'NoneType' object is not callable


def test_a_workdir_without_a_checkpoint_raises(ae_run, tmp_path):
  with pytest.raises(FileNotFoundError, match='config.json'):
    aelab.load(str(tmp_path))
  shutil.copy(f'{ae_run[0]}/config.json', tmp_path / 'config.json')
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    aelab.load(str(tmp_path))


# ---- issue 20, finding 8: the API checks its input ----

def test_stored_uint8_and_float_inputs_give_the_same_codes_in_any_layout(ae_run):
  trained, dataset = aelab.load(ae_run[0]), ae_run[2]
  assert dataset.test.dtype == np.uint8 and trained.x_max == dataset.x_max == 16
  z = trained.encode(dataset.x_test[:4])
  np.testing.assert_allclose(trained.encode(dataset.test[:4]), z, rtol=1e-6, atol=1e-6)  # before: 16x off
  np.testing.assert_allclose(trained.encode(dataset.x_test[:4].reshape(4, 8, 8, 1)), z, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(trained.reconstruct(dataset.x_test[:4].reshape(4, 8, 8)),
                             trained.reconstruct(dataset.test[:4]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('shape', [(4, 65), (4, 28, 28), (64,), (4, 8, 8, 3), (0, 64), (4, 2, 32)])
def test_a_wrong_shape_rank_or_empty_batch_names_the_expected_shape(ae_run, shape):
  trained = aelab.load(ae_run[0])
  with pytest.raises(data.DataError, match=re.escape(f'x of shape {shape}: this run takes examples of shape N x 64 '
                                                     'or N x 8 x 8 or N x 8 x 8 x 1 with N >= 1')):
    trained.encode(np.zeros(shape, np.float32))  # before: flax ScopeParamShapeError, jnp.pad or ZeroDivisionError


def test_bad_codes_and_counts_are_refused(vae_run):
  trained = aelab.load(vae_run[0])
  latent_dim = trained.config.model.latent_dim
  with pytest.raises(data.DataError, match=rf'z of shape \(3, {latent_dim + 1}\): this run\'s codes have shape N x '
                     rf'{latent_dim} with N >= 1'):
    trained.decode(np.zeros((3, latent_dim + 1)))
  for num in (-1, 0, 2.5, True):
    with pytest.raises(data.DataError, match=r'num must be a positive int'):
      trained.sample(num)  # before: sample(-1) raised an MLIRError
  with pytest.raises(data.DataError, match='give an array of numbers'):
    trained.encode([['a'] * 64])


def _damage_every_checkpoint(workdir, how: str) -> None:
  for step in (workdir / 'checkpoints').iterdir():
    files = [p for p in (step / 'state').rglob('*') if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(biggest.read_bytes())
    if how == 'truncated':
      raw = raw[:len(raw) // 2]
    else:
      raw[len(raw) // 2:len(raw) // 2 + 4] = bytes(b ^ 0xFF for b in raw[len(raw) // 2:len(raw) // 2 + 4])
    biggest.write_bytes(bytes(raw))


@pytest.mark.parametrize('how', ['truncated', 'flipped'])
def test_load_of_damaged_checkpoints_is_one_checkpoint_error_without_library_noise(ae_run, tmp_path, capfd, how):
  copy = tmp_path / 'copy'
  shutil.copytree(ae_run[0], copy)
  _damage_every_checkpoint(copy, how)
  capfd.readouterr()
  with pytest.raises(api.CheckpointError) as info:  # before: FileNotFoundError / loaded off by 2e19
    aelab.load(str(copy))
  message = str(info.value)
  assert message.startswith(f'No checkpoint of {copy} reads back intact (The checkpoint of epoch')
  assert '\n' not in message
  # Flipped bytes are a checksum mismatch, or (where they land in a compressed chunk's header) unreadable.
  assert ('is damaged' in message or 'does not read back' in message) if how == 'flipped' else (
      'does not read back' in message)
  printed = capfd.readouterr()
  assert 'Event loop is closed' not in printed.err + printed.out and 'Traceback' not in printed.err
