"""How good samples are, from features: a Frechet distance, precision and recall, density and coverage.

Every function takes two sets of features (``real_NxF``: the test split's, ``fake_MxF``: the samples')
as plain numpy arrays and returns numbers; ``aelab.eval.classifier`` gives the features (the
``fd_classifier`` space). The k-NN radius of a point is the distance to its k-th nearest neighbour in
its own set, the point itself excluded; a point lies in a ball when its distance is ``<=`` the radius
(closed balls, as the papers define them).

- Frechet distance between Gaussians fitted to the two sets (Frechet 1957; Dowson & Landau 1982;
  Heusel et al. 2017, Eq. 6, where it is FID on Inception features).
- Precision and recall: Kynkaanniemi, Karras, Laine, Lehtinen & Aila (2019), Improved Precision and Recall
  Metric for Assessing Generative Models, Eq. 1-3 (the paper's k = 3 is :func:`precision_recall`'s default).
- Density and coverage: Naeem, Oh, Uh, Choi & Yoo (2020), Reliable Fidelity and Diversity Metrics for
  Generative Models, Eq. 3-4 (k = 5).

:func:`sample_metrics` computes all four with one k, 5 by default: Naeem et al.'s recommendation and their
reference implementation's convention (``prdc.compute_prdc(real, fake, nearest_k)``), which scores
precision and recall with the same k.
"""
import numpy as np

from aelab.errors import DataError

CHUNK = 1024  # rows of a distance matrix computed at once


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 2 or not np.all(np.isfinite(x)):
    raise DataError(f'{name} must be a finite N x F array with N >= 2, got shape {x.shape}: pass features of '
                    'samples and of real examples.')
  return x


def _check_pair(real_NxF: np.ndarray, fake_MxF: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  real, fake = _as_features(real_NxF, 'real_NxF'), _as_features(fake_MxF, 'fake_MxF')
  if real.shape[1] != fake.shape[1]:
    raise DataError(f'real and fake features differ in width ({real.shape[1]} vs {fake.shape[1]}): compute both '
                    'with the same feature extractor.')
  return real, fake


def pairwise_distances(a_NxF: np.ndarray, b_MxF: np.ndarray) -> np.ndarray:
  """Euclidean distances ``N x M`` (float64, in chunks of rows)."""
  a, b = np.asarray(a_NxF, np.float64), np.asarray(b_MxF, np.float64)
  b_sq = np.sum(b * b, axis=1)
  out = np.empty((len(a), len(b)))
  for start in range(0, len(a), CHUNK):
    rows = a[start:start + CHUNK]
    sq = np.sum(rows * rows, axis=1)[:, None] - 2.0 * rows @ b.T + b_sq[None]
    out[start:start + CHUNK] = np.sqrt(np.maximum(sq, 0.0))
  return out


def knn_radii(x_NxF: np.ndarray, k: int) -> np.ndarray:
  """Distance of each row to its ``k``-th nearest other row: shape ``N``. Raises DataError for ``k >= N``."""
  x = np.asarray(x_NxF, np.float64)
  if not 1 <= k < len(x):
    raise DataError(f'k={k} nearest neighbours need k in [1, N - 1] with N={len(x)} points: use more samples or a '
                    'smaller k.')
  d = pairwise_distances(x, x)
  return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
  """``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between the Gaussians fitted to two
  ``N x F`` feature sets (squared feature units; Dowson & Landau 1982; Heusel et al. 2017, Eq. 6).

  ``tr (S_a S_b)^(1/2)`` is computed as ``sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))`` of a symmetric matrix
  (the same eigenvalues), so it is real. Covariances are unbiased (``N - 1``). Raises DataError for arrays
  that are not finite ``N x F`` with ``N >= 2`` or of different widths.
  """
  a, b = _check_pair(feats_a, feats_b)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
  w, v = np.linalg.eigh(cov_a)
  sqrt_a = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
  inner = sqrt_a @ cov_b @ sqrt_a
  tr_sqrt = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def _coverage_of(points_NxF: np.ndarray, centres_MxF: np.ndarray, radii_M: np.ndarray) -> np.ndarray:
  """``N x M`` booleans: point ``i`` lies in the ball of centre ``j`` (distance ``<=`` its radius)."""
  return pairwise_distances(points_NxF, centres_MxF) <= radii_M[None]


def precision_recall(real_NxF: np.ndarray, fake_MxF: np.ndarray, k: int = 3) -> dict[str, float]:
  """``{'precision', 'recall'}`` in [0, 1] (Kynkaanniemi et al. 2019, Eq. 1-3): precision is the fraction of
  fake points inside some real point's k-NN ball (fidelity), recall the fraction of real points inside
  some fake point's k-NN ball (diversity). Raises DataError as :func:`frechet_distance` and for ``k`` not
  below both set sizes."""
  real, fake = _check_pair(real_NxF, fake_MxF)
  precision = _coverage_of(fake, real, knn_radii(real, k)).any(axis=1).mean()
  recall = _coverage_of(real, fake, knn_radii(fake, k)).any(axis=1).mean()
  return {'precision': float(precision), 'recall': float(recall)}


def density_coverage(real_NxF: np.ndarray, fake_MxF: np.ndarray, k: int = 5) -> dict[str, float]:
  """``{'density', 'coverage'}`` (Naeem et al. 2020, Eq. 3-4) with the real points' k-NN balls:
  density ``= 1 / (k M) sum_j sum_i 1[fake_j in B(real_i)]`` (about 1 for fakes distributed as the real
  data, may exceed 1), coverage ``= 1 / N sum_i 1[some fake_j in B(real_i)]`` in [0, 1]. Raises DataError
  as :func:`frechet_distance` and for ``k >= N``."""
  real, fake = _check_pair(real_NxF, fake_MxF)
  inside_MxN = _coverage_of(fake, real, knn_radii(real, k))
  return {'density': float(inside_MxN.sum() / (k * len(fake))), 'coverage': float(inside_MxN.any(axis=0).mean())}


def sample_metrics(real_NxF: np.ndarray, fake_MxF: np.ndarray, k: int = 5) -> dict[str, float]:
  """``{'fd_classifier', 'precision', 'recall', 'density', 'coverage'}`` of fake features against real
  ones (each above), the last four with ``k`` nearest neighbours (Naeem et al. 2020 recommend 5 and score
  precision and recall with the same k; Kynkaanniemi et al. 2019 used 3); ``fd_classifier`` is
  :func:`frechet_distance` (named for the classifier's feature space it is computed in, not FID). Raises
  DataError as :func:`precision_recall`."""
  return {'fd_classifier': frechet_distance(real_NxF, fake_MxF), **precision_recall(real_NxF, fake_MxF, k),
          **density_coverage(real_NxF, fake_MxF, k)}
