"""Representation learning: linear AE = PCA, probes on codes, kNN, encoders, figures, the CSV example."""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import data, evaluate, plots, pretrain
from aelab.models import ae, vae
from conftest import ROOT, load_config

sys.path.insert(0, str(ROOT / 'experiments'))
import embed_2d  # noqa: E402
import pca_equivalence  # noqa: E402


@pytest.fixture(scope='module')
def digits():
  return data.load(load_config('ae').data)


def test_linear_autoencoder_spans_the_principal_subspace():
  rng = np.random.default_rng(0)  # 12-D data, 4 strong directions in a random basis, 8 weak ones
  basis = np.linalg.qr(rng.normal(size=(12, 12)))[0]
  x = (rng.normal(size=(600, 12)) * np.array([3, 2.5, 2, 1.5] + [0.3] * 8)) @ basis.T
  centred = pca_equivalence.centred(pretrain.arrays_dataset(x[:500], x[500:], 'synthetic'))
  row = pca_equivalence.compare_k(centred, 'digits', 4, 'identity', epochs=40, learning_rate=3e-2)
  assert row['max_angle_deg'] < 5.0, row
  assert abs(row['ae_train_mse'] / row['pca_train_mse'] - 1) < 0.01, row
  wrong = evaluate.principal_angles_deg(basis[:, :4], basis[:, 4:8])  # another subspace: 90 degrees
  assert wrong.min() > 89.0
  with pytest.raises(ValueError, match='k=13'):
    pca_equivalence.compare_k(centred, 'digits', 13, 'identity', epochs=1)


def test_principal_angles_ignore_the_basis():
  a = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 3)))[0]
  mixed = a @ np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
  np.testing.assert_allclose(evaluate.principal_angles_deg(a, mixed), 0.0, atol=1e-5)
  with pytest.raises(ValueError, match='same D'):
    evaluate.principal_angles_deg(a, a[:9])


def _blobs(n, labels, shift=10.0, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 5)) + shift * labels[:, None], labels


def test_linear_probe_separable_near_one_random_labels_near_chance():
  y = np.tile([0, 1], 300)
  z, _ = _blobs(600, y)
  assert evaluate.linear_probe(z[:400], y[:400], z[400:], y[400:]) > 0.98
  noise = np.random.default_rng(1).normal(size=(2000, 5))
  y_random = np.random.default_rng(2).integers(0, 2, 2000)
  assert abs(evaluate.linear_probe(noise[:1000], y_random[:1000], noise[1000:], y_random[1000:]) - 0.5) < 0.08


def test_knn_on_a_toy_case_and_errors():
  z_train = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
  y_train = np.array([0, 0, 0, 1, 1, 1])
  z_test, y_test = np.array([[0.05], [5.05], [4.0], [1.0]]), np.array([0, 1, 1, 1])
  assert evaluate.knn_accuracy(z_train, y_train, z_test, y_test, k=3) == 0.75  # [1.0] is nearer class 0
  assert evaluate.knn_accuracy(z_train, y_train, z_test, y_test, k=6) == 0.25  # 3:3 ties go to class 0
  with pytest.raises(ValueError, match='k=7'):
    evaluate.knn_accuracy(z_train, y_train, z_test, y_test, k=7)
  with pytest.raises(ValueError, match='labels'):
    evaluate.linear_probe(z_train, None, z_test, y_test)
  with pytest.raises(ValueError, match='NaN'):
    evaluate.knn_accuracy(z_train * np.nan, y_train, z_test, y_test)


def test_encode_gives_codes_and_posterior_means():
  x = jax.random.uniform(jax.random.key(0), (7, 6))
  model = ae.Model((4,), 3, (6,))
  params = ae.init(model, jax.random.key(1), x)
  np.testing.assert_allclose(evaluate.encode(model, params, np.asarray(x), batch_size=3),
                             model.apply(params, x)[0], rtol=1e-6)
  model = vae.Model((4,), 3, (6,))
  params = vae.init(model, jax.random.key(1), x)
  mean, _ = model.apply(params, x, method=vae.Model.encode)
  np.testing.assert_allclose(evaluate.encode(model, params, np.asarray(x)), mean, rtol=1e-6)


def test_filter_tiles_and_embedding_panels(tmp_path):
  kernel = np.stack([np.arange(4.0), -np.arange(4.0), np.ones(4)], 1)  # 3 filters of 2 x 2
  tiled = plots.filters(kernel, (2, 2))
  assert tiled.shape == (2 * 3 + 1, 2 * 3 + 1)
  np.testing.assert_allclose(tiled[1:3, 1:3], [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)  # scaled to [0, 1]
  np.testing.assert_allclose(tiled[1:3, 4:6], [[1, 2 / 3], [1 / 3, 0]], atol=1e-6)
  with pytest.raises(ValueError, match='cannot be shown'):
    plots.filters(kernel, (3, 3))
  plots.embedding_panels({'a': np.zeros((5, 2)), 'b': np.ones((5, 3))}, np.arange(5), str(tmp_path / 'e.png'))
  assert (tmp_path / 'e.png').stat().st_size > 1000
  with pytest.raises(ValueError, match='panel'):
    plots.embedding_panels({'a': np.zeros((4, 2))}, np.arange(5), str(tmp_path / 'f.png'))


def test_example_csv_is_reproducible_and_loads(tmp_path):
  path = tmp_path / 'blobs.csv'
  embed_2d.write_example_csv(str(path))
  assert path.read_text() == pathlib.Path(embed_2d.EXAMPLE_CSV).read_text()
  dataset = data.load(load_config('ae', f'csv={path}').data)
  assert dataset.x_train.shape == (320, 10) and set(np.unique(dataset.y_train)) == {0, 1, 2, 3}
