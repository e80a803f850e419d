"""aelab.train.figures: latent interpolation and traversal, the end-of-training arrays, the saved reconstructions,
and the figure files a run writes (none with ``train.figures_every = 0``)."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data, models

from aelab.train import engine, figures

from aelab.eval import metrics
from conftest import load_config, small


def test_latent_interpolation_and_traversal():
  z_a, z_b = jnp.array([0.0, 1.0]), jnp.array([2.0, -1.0])
  path = figures.interpolate(z_a, z_b, 5)
  assert path.shape == (5, 2)
  np.testing.assert_allclose(np.asarray(path)[[0, 2, 4]], [[0.0, 1.0], [1.0, 0.0], [2.0, -1.0]])
  grid = figures.traverse(jnp.array([0.5, 0.5, 0.5]), jnp.array([-1.0, 1.0]), 2)
  np.testing.assert_allclose(grid, [[[-1.0, 0.5, 0.5], [1.0, 0.5, 0.5]], [[0.5, -1.0, 0.5], [0.5, 1.0, 0.5]]])


def test_final_arrays_of_a_generative_model():
  config = load_config('vae')
  config.model.latent_dim = 2
  dataset = data.load(config.data)
  family = models.get(config, dataset.shape)
  params = jax.jit(family.init)(jax.random.key(0), jnp.zeros((1, dataset.x_test.shape[1])))
  x = jnp.asarray(dataset.x_test[:50])
  arrays = jax.jit(figures.make_final_arrays(family, config, num_steps=6))(params, x)
  shapes = {k: v.shape for k, v in arrays.items()}
  assert shapes == {'codes': (50, 2), 'active_units': (), 'interpolation': (2, 6, 64), 'traversal': (2, 6, 64),
                    'samples': (figures.NUM_SAMPLES, 64), 'prior': (50, 2)}
  codes = jax.jit(family.encode)(params, x)
  np.testing.assert_allclose(arrays['codes'], codes, rtol=1e-5, atol=1e-6)
  assert int(arrays['active_units']) == int(metrics.active_units(codes))
  decode = jax.jit(family.decode)
  ends = decode(params, codes[:4])  # the lines run from code 0 to 1 and 2 to 3
  np.testing.assert_allclose(arrays['interpolation'][:, [0, -1]].reshape(4, -1), ends, rtol=1e-4, atol=1e-5)
  # Row d varies code dimension d of the first code over +-2 of the codes' largest std.
  grid = figures.traverse(codes[0], jnp.linspace(-2.0, 2.0, 6) * jnp.max(jnp.std(codes, axis=0)), 2)
  np.testing.assert_allclose(arrays['traversal'], decode(params, grid.reshape(12, 2)).reshape(2, 6, 64),
                             rtol=1e-4, atol=1e-5)
  config.train.figures_every = 0
  assert set(jax.jit(figures.make_final_arrays(family, config))(params, x)) == {'codes', 'active_units'}


def test_reconstructions_are_saved_and_loaded_by_epoch(tmp_path):
  path_of = lambda name: str(tmp_path / name)  # noqa: E731
  by_epoch = {}
  for epoch in (1, 2, 3):
    rows = {'input': np.zeros((4, 64)), 'reconstruction': np.full((4, 64), epoch / 10)}
    figures.reconstructions(path_of, epoch, rows, (8, 8, 1), by_epoch)
  assert {f'reconstructions_epoch00{e}.png' for e in (1, 2, 3)} <= set(os.listdir(tmp_path))
  loaded = figures.load_reconstructions(path_of, up_to_epoch=2)  # a run resumed from epoch 2
  assert sorted(loaded) == [1, 2]
  np.testing.assert_allclose(loaded[2], 0.2)
  assert figures.load_reconstructions(lambda name: str(tmp_path / 'none' / name), 5) == {}


def test_figures_of_a_generative_run(tmp_path):
  config = small(load_config('vae'), epochs=2)
  config.model.latent_dim = 2
  config.train.figures_every = 1
  summary = engine.train_and_evaluate(config, str(tmp_path))
  written = set(os.listdir(tmp_path / 'figures'))
  assert {'samples.png', 'interpolation.png', 'traversal.png', 'latent_scatter.png', 'learning_curves.png',
          'reconstructions_over_epochs.png', 'reconstructions_epoch001.png', 'reconstructions_epoch002.png',
          figures.RECONSTRUCTIONS_FILE} <= written
  assert all(os.path.getsize(tmp_path / 'figures' / name) > 0 for name in written)
  assert summary['test/nll'] < summary['test/neg_elbo'] and 0 <= summary['test/active_units'] <= 2


def test_no_figures_when_figures_every_is_zero(tmp_path):
  config = small(load_config('ae'), epochs=1)  # small() sets train.figures_every = 0
  config.data.max_train_examples = 256
  engine.train_and_evaluate(config, str(tmp_path))
  assert os.path.exists(tmp_path / 'summary.json')
  figures_dir = tmp_path / 'figures'
  assert not figures_dir.exists() or os.listdir(figures_dir) == []  # no learning curves either
