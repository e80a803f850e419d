"""Sample metrics (aelab/eval/samples.py) against hand computations on tiny sets, and the cached
fd_classifier feature net (aelab/eval/classifier.py) on the bundled digits."""
import numpy as np
import pytest
import scipy.linalg

from aelab import config as config_lib, data
from aelab.errors import DataError
from aelab.eval import classifier, samples


def test_frechet_distance_by_hand_1d():
  # a: mean 1, unbiased variance 2; b: mean 3, variance 8 -> (1 - 3)^2 + 2 + 8 - 2 sqrt(2 * 8) = 6.
  assert samples.frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(6.0)


def test_frechet_distance_matches_the_matrix_square_root():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4)) @ rng.normal(size=(4, 4)) + 1.0
  mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
  assert samples.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
  assert samples.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
  assert samples.frechet_distance(a, a + np.array([1.0, 2.0, 0.0, 0.0])) == pytest.approx(5.0)


def test_precision_recall_by_hand():
  real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii: 1 each
  fake = np.array([[0.5], [10.0]])  # k=1 radii: 9.5 each
  # 0.5 lies in the ball of 0 (and 1), 10 in none -> precision 1/2; every real point lies within 9.5 of 0.5.
  assert samples.precision_recall(real, fake, k=1) == {'precision': 0.5, 'recall': 1.0}
  # k=3 radii of real: 3, 2, 2, 3 -> 10 is 7 from 3: still outside.
  assert samples.precision_recall(real, np.array([[0.5], [10.0], [1.5], [2.0]]), k=3)['precision'] == 0.75


def test_density_coverage_by_hand():
  real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1 radii: 1 each
  fake = np.array([[0.5], [0.6], [10.0]])
  # 0.5 in the balls of 0 and 1; 0.6 in those of 0 and 1 (1.4 from 2); 10 in none -> density 4 / (1 * 3).
  # Real 0 and 1 have a fake in their ball, 2 and 3 do not -> coverage 2 / 4.
  out = samples.density_coverage(real, fake, k=1)
  assert out['density'] == pytest.approx(4 / 3) and out['coverage'] == 0.5


def test_metrics_refuse_bad_features():
  with pytest.raises(DataError, match='differ in width'):
    samples.frechet_distance(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(DataError, match='finite'):
    samples.precision_recall(np.full((3, 2), np.nan), np.zeros((3, 2)))
  with pytest.raises(DataError, match='k=3'):
    samples.precision_recall(np.zeros((3, 2)), np.zeros((5, 2)), k=3)


def test_test_split_against_training_split_in_classifier_features(tmp_path, monkeypatch):
  """The test set scores like data (precision and recall >= 0.9) and far better than noise images."""
  monkeypatch.setenv('AELAB_CACHE', str(tmp_path))
  dataset = data.load(config_lib.base('ae').data)  # the bundled digits: 1437 train / 360 test
  net = classifier.load_or_train(dataset, log=lambda line: None)
  assert net.test_accuracy > 0.9
  real, train = net.features(dataset.x_test), net.features(dataset.x_train)
  noise = net.features(np.random.default_rng(0).random(dataset.x_test.shape, np.float32))
  data_vs_data, noise_vs_data = samples.sample_metrics(real, train), samples.sample_metrics(real, noise)
  assert data_vs_data['precision'] >= 0.9 and data_vs_data['recall'] >= 0.9
  assert data_vs_data['fd_classifier'] < 0.05 * noise_vs_data['fd_classifier']
  assert noise_vs_data['density'] < 0.2 and noise_vs_data['coverage'] < 0.2  # 1.07 and 1.0 for the training split
  cached = classifier.load_or_train(dataset, log=lambda line: pytest.fail('trained twice: ' + line))
  np.testing.assert_allclose(cached.features(dataset.x_test[:5]), real[:5], rtol=1e-5, atol=1e-6)
  assert cached.path.startswith(str(tmp_path))
