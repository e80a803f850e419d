"""Samplers (aelab/samplers.py), the gated PixelCNN (aelab/nn/pixelcnn.py) and python -m aelab.sample."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import api, config as config_lib, data, sample, samplers
from aelab.errors import ConfigError
from aelab.nn import pixelcnn
from aelab.train import engine


def test_pixelcnn_is_causal_without_a_blind_spot():
  """The logits at each position change with every code before it in raster order (including the ones
  up and to the right, the blind spot of a single masked stack) and with none at or after it."""
  net = pixelcnn.PixelCNN(num_codes=5, channels=8, num_layers=3)
  codes = jax.random.randint(jax.random.key(0), (1, 3, 4), 0, 5)
  params = net.init(jax.random.key(1), codes)
  apply = jax.jit(net.apply)
  logits = apply(params, codes)
  flat = codes.reshape(-1)
  for t in range(12):
    changed_after = flat.at[t:].set((flat[t:] + 1) % 5).reshape(1, 3, 4)
    np.testing.assert_allclose(apply(params, changed_after).reshape(12, 5)[t], logits.reshape(12, 5)[t],
                               atol=1e-6)
    for before in range(t):
      changed = flat.at[before].set((flat[before] + 1) % 5).reshape(1, 3, 4)
      assert not np.allclose(apply(params, changed).reshape(12, 5)[t], logits.reshape(12, 5)[t]), (before, t)


def test_pixelcnn_sample_draws_from_the_conditionals():
  """With the logits of position 0 forced to one code, every sample starts with it."""
  net = pixelcnn.PixelCNN(num_codes=4, channels=8, num_layers=2)
  params = net.init(jax.random.key(0), jnp.zeros((1, 2, 2), jnp.int32))
  params['params']['logits']['bias'] = params['params']['logits']['bias'].at[2].set(1e4)  # code 2 everywhere
  drawn = pixelcnn.sample(net, params, jax.random.key(1), 16, (2, 2))
  assert drawn.shape == (16, 2, 2) and np.all(np.asarray(drawn) == 2)


def test_gmm_sampler_draws_the_fitted_mixture():
  rng = np.random.default_rng(0)
  codes = np.concatenate([rng.normal(-5.0, 0.5, (300, 2)), rng.normal(5.0, 1.0, (900, 2))])
  state = samplers.fit_gmm(codes, samplers.Options(n_components=2))
  order = np.argsort(state['means'][:, 0])
  np.testing.assert_allclose(state['weights'][order], [0.25, 0.75], atol=0.01)
  z = np.asarray(samplers.sample_gmm(state, jax.random.key(0), 20000))
  assert np.mean(z[:, 0] < 0) == pytest.approx(0.25, abs=0.02)
  np.testing.assert_allclose(z[z[:, 0] > 0].std(0), [1.0, 1.0], atol=0.05)
  with pytest.raises(ConfigError, match='n_components'):
    samplers.fit_gmm(codes[:5], samplers.Options(n_components=10))


@pytest.fixture(scope='module', autouse=True)
def classifier_cache(tmp_path_factory):
  """One fd_classifier cache for the module (the classifier of digits trains once)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('AELAB_CACHE', str(tmp_path_factory.mktemp('cache')))
    yield


@pytest.fixture(scope='module')
def ae_run(tmp_path_factory):
  """An MLP autoencoder on the bundled digits, 8 epochs."""
  workdir = str(tmp_path_factory.mktemp('ae'))
  config = config_lib.load('configs/ae.py')
  config.train.update(num_epochs=8, figures_every=0)
  config.eval.final_metrics = False
  engine.train_and_evaluate(config, workdir, log=lambda line: None)
  return workdir


def test_sample_writes_npz_figure_and_scores_and_reuses_the_fit(ae_run):
  lines = []
  out = sample.sample_workdir(ae_run, 'gmm', 200, seed=1, evaluate=True, log=lines.append)
  with np.load(out['npz']) as f:
    assert f['x'].shape == (200, 8, 8, 1) and f['x_uint8'].dtype == np.uint8
    assert 0.0 <= f['x'].min() and f['x'].max() <= 1.0
  assert os.path.exists(out['figure']) and os.path.exists(os.path.join(ae_run, 'samplers', 'gmm', 'state.msgpack'))
  with open(out['json']) as f:
    assert set(json.load(f)) >= {'test/fd_classifier', 'test/precision', 'test/recall', 'test/density',
                                 'test/coverage'}
  again = sample.sample_workdir(ae_run, 'gmm', 200, seed=1, log=lambda line: pytest.fail('refitted: ' + line))
  with np.load(out['npz']) as f, np.load(again['npz']) as g:
    np.testing.assert_array_equal(f['x'], g['x'])
  assert any('gmm: fitting' in line for line in lines)


def test_gmm_beats_normal_codes_for_a_plain_autoencoder(ae_run):
  """Ghosh et al. 2020: a deterministic AE's codes are not N(0, I); a mixture fitted to them samples better."""
  dataset = data.load(api.read_config(ae_run).data)
  trained = api.load(ae_run, dataset)
  quiet = lambda line: None  # noqa: E731
  gmm = samplers.score(samplers.draw(trained, dataset, 'gmm', 300, workdir=ae_run, log=quiet), dataset, quiet)
  normal = samplers.score(samplers.draw(trained, dataset, 'normal', 300, log=quiet), dataset, quiet)
  assert gmm['test/fd_classifier'] < 0.5 * normal['test/fd_classifier']
  assert gmm['test/precision'] > normal['test/precision']


def test_samplers_that_do_not_fit_say_what_to_use(ae_run):
  dataset = data.load(api.read_config(ae_run).data)
  trained = api.load(ae_run, dataset)
  assert samplers.applicable(trained) == ['normal', 'gmm', 'two_stage']
  with pytest.raises(ConfigError, match=r'model.name=ae has no prior to sample: use --sampler=gmm'):
    samplers.draw(trained, dataset, 'prior', 4)
  with pytest.raises(ConfigError, match='VQ-VAE'):
    samplers.draw(trained, dataset, 'pixelcnn', 4)
  with pytest.raises(ConfigError, match='unknown'):
    samplers.draw(trained, dataset, 'flow', 4)
  with pytest.raises(SystemExit, match='error: model.name=ae has no prior'):
    sample.main(['--workdir', ae_run, '--sampler', 'prior', '--num', '4'])


def test_two_stage_trains_a_vae_on_the_codes(ae_run):
  dataset = data.load(api.read_config(ae_run).data)
  trained = api.load(ae_run, dataset)
  options = samplers.Options(two_stage_hidden=(32,), two_stage_epochs=2)
  x = samplers.draw(trained, dataset, 'two_stage', 10, workdir=ae_run, options=options, log=lambda line: None)
  assert x.shape == (10, 64) and np.all(np.isfinite(x))
  with open(os.path.join(ae_run, 'samplers', 'two_stage', 'sampler.json')) as f:
    assert json.load(f)['two_stage_epochs'] == 2
  state = samplers._fitted(trained, dataset, 'two_stage', ae_run, options, lambda line: pytest.fail(line))
  codes = samplers.train_codes(trained, dataset)
  np.testing.assert_allclose(state['mean'], codes.mean(0), rtol=1e-5, atol=1e-6)


def test_vqvae_samples_through_a_pixelcnn_prior(tmp_path):
  workdir = str(tmp_path / 'vq')
  config = config_lib.load('configs/vqvae.py')
  config.train.update(num_epochs=2, figures_every=0)
  config.eval.final_metrics = False
  engine.train_and_evaluate(config, workdir, log=lambda line: None)
  dataset = data.load(config.data)
  trained = api.load(workdir, dataset)
  assert samplers.applicable(trained) == ['normal', 'gmm', 'two_stage', 'pixelcnn', 'uniform_codes']
  maps, grid = samplers.code_maps(trained, dataset)
  assert grid == (2, 2) and maps.shape == (len(dataset.train), 2, 2) and maps.max() < 64
  options = samplers.Options(pixelcnn_channels=8, pixelcnn_layers=2, pixelcnn_epochs=1)
  x = samplers.draw(trained, dataset, 'pixelcnn', 6, workdir=workdir, options=options, log=lambda line: None)
  assert x.shape == (6, 64) and os.path.exists(os.path.join(workdir, 'samplers', 'pixelcnn', 'state.msgpack'))
  assert np.all((x >= 0) & (x <= 1))
