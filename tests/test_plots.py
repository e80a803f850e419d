"""aelab.eval.plots: tiled images, image rows and grids, learning curves, filters, 2-D projections, scatters."""
import numpy as np
import pytest
from matplotlib import image as mpimg

from aelab.eval import plots

PNG = b'\x89PNG\r\n\x1a\n'


def _is_png(path):
  return path.read_bytes()[:8] == PNG and min(mpimg.imread(path).shape[:2]) > 20


def test_tile_makes_one_image_of_rows_on_grey():
  rows = [np.full((3, 6), 0.0), np.linspace(0.0, 1.0, 12).reshape(2, 6)]  # 3 and 2 images of 2 x 3
  tiled = plots.tile(rows, (2, 3))
  assert tiled.shape == (2 * (2 + 1) + 1, 3 * (3 + 1) + 1)  # 2 rows, 3 columns, 1-pixel gaps
  np.testing.assert_array_equal(tiled[0], 0.5)  # the gap above the first row
  np.testing.assert_array_equal(tiled[1:3, 1:4], 0.0)  # row 0, image 0
  np.testing.assert_allclose(tiled[4:6, 5:8], np.linspace(0.0, 1.0, 12)[6:].reshape(2, 3))  # row 1, image 1
  np.testing.assert_array_equal(tiled[4:6, 9:12], 0.5)  # row 1 has no third image
  colour = plots.tile([np.full((1, 2 * 2 * 3), 2.0)], (2, 2, 3), gap=0)
  assert colour.shape == (2, 2, 3) and colour.max() == 1.0  # clipped to [0, 1]


def test_image_rows_and_grid_write_pngs(tmp_path):
  rows = {'input': np.random.default_rng(0).uniform(size=(4, 64)), 'reconstruction': np.zeros((4, 64))}
  plots.image_rows(rows, (8, 8, 1), str(tmp_path / 'rows.png'), 'title')
  assert _is_png(tmp_path / 'rows.png')
  plots.image_grid(np.ones((10, 64)), (8, 8, 1), str(tmp_path / 'grid.png'), num_cols=4)
  assert _is_png(tmp_path / 'grid.png')


def test_learning_curves_and_reconstructions_over_epochs_write_pngs(tmp_path):
  history = [{'epoch': e, 'step': 10 * e, 'train/loss': 1.0 / e, 'test/loss': 1.1 / e, 'epoch_time_s': 0.1}
             for e in (1, 2, 3)]
  plots.learning_curves(history, str(tmp_path / 'curves.png'))
  assert _is_png(tmp_path / 'curves.png')
  by_epoch = {e: np.full((3, 64), e / 20) for e in range(1, 21)}
  plots.reconstructions_over_epochs(np.zeros((3, 64)), by_epoch, (8, 8, 1), str(tmp_path / 'over.png'))
  assert _is_png(tmp_path / 'over.png')


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


def test_project_2d_and_latent_scatter(tmp_path):
  points, axis = plots.project_2d(np.random.default_rng(0).normal(size=(50, 5)), 'pca')
  assert points.shape == (50, 2) and axis == 'PC'
  codes = np.random.default_rng(1).normal(size=(50, 1))
  points, axis = plots.project_2d(codes)
  assert axis == 'z' and np.array_equal(points[:, 0], codes[:, 0]) and not points[:, 1].any()
  with pytest.raises(ValueError, match='pca or tsne'):
    plots.project_2d(np.zeros((5, 3)), 'umap')
  plots.latent_scatter(np.random.default_rng(2).normal(size=(40, 2)), np.arange(40) % 10, str(tmp_path / 's.png'),
                       prior_samples=np.zeros((40, 2)))
  assert _is_png(tmp_path / 's.png')


def test_pca_projection_matches_scikit_learn_up_to_sign():
  from sklearn.decomposition import PCA
  codes = np.random.default_rng(1).normal(size=(200, 6)) * np.arange(1, 7)
  points, _ = plots.project_2d(codes, 'pca')
  expected = PCA(2).fit_transform(codes)
  np.testing.assert_allclose(np.abs(points), np.abs(expected), rtol=1e-6, atol=1e-8)
