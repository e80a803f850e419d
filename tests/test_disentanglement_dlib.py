"""IRS, the unsupervised scores, the downstream task and UDR (aelab/eval/disentanglement.py): the expected
answer on constructed codes (the factors, a rotation, a code ignoring a factor, noise), and equality with a
transcription of google-research/disentanglement_lib's numpy code on the same arrays (the ``_dlib_*``
functions below: evaluation/metrics/irs.py, unsupervised_metrics.py, downstream_task.py, utils.py and
evaluation/udr/metrics/udr.py, with its N x Z / Z x N transposes kept)."""
import warnings

import numpy as np
import pytest
import scipy.linalg
from scipy import stats
from sklearn import linear_model, metrics, model_selection, preprocessing

from aelab.data import shapes2d
from aelab.eval import disentanglement

GRID = shapes2d.Shapes2D((3, 3, 4, 5, 5), 16)


@pytest.fixture(scope='module')
def codes():
  """Train / test factors and four codes of them: the factors, a rotation, one ignoring factor 0, noise."""
  rng = np.random.default_rng(0)
  f, ft = GRID.sample_factors(800, rng), GRID.sample_factors(300, rng)
  rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]
  return f, ft, {'factors': (f * 1.0, ft * 1.0), 'rotated': (f @ rotation, ft @ rotation),
                 'ignores_shape': (f[:, 1:] * 1.0, ft[:, 1:] * 1.0),
                 'noise': (rng.normal(size=(800, 5)), rng.normal(size=(300, 5)))}


# ---- disentanglement_lib's code, transcribed (Apache 2.0); arrays as it lays them out ----


def _dlib_histogram_discretize(target, num_bins=20):  # utils._histogram_discretize, target Z x N
  discretized = np.zeros_like(target)
  for i in range(target.shape[0]):
    discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
  return discretized


def _dlib_discrete_mutual_info(mus, ys):  # utils.discrete_mutual_info
  m = np.zeros([mus.shape[0], ys.shape[0]])
  for i in range(mus.shape[0]):
    for j in range(ys.shape[0]):
      m[i, j] = metrics.mutual_info_score(ys[j, :], mus[i, :])
  return m


def _dlib_irs(mus, ys, diff_quantile=0.99):  # irs.compute_irs after sampling; mus Z x N, ys K x N
  ys_discrete = _dlib_histogram_discretize(ys)
  active_mus = mus[mus.var(axis=1) > 0., :]
  gen_factors, latents = ys_discrete.T, active_mus.T  # scalable_disentanglement_score
  num_gen, num_lat = gen_factors.shape[1], latents.shape[1]
  max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
  cum_deviations = np.zeros([num_lat, num_gen])
  for i in range(num_gen):
    unique_factors = np.unique(gen_factors[:, i], axis=0)
    num_distinct_factors = unique_factors.shape[0]
    for k in range(num_distinct_factors):
      match = gen_factors[:, i] == unique_factors[k]
      e_loc = np.mean(latents[match, :], axis=0)
      diffs = np.abs(latents[match, :] - e_loc)
      max_diffs = np.quantile(diffs, q=diff_quantile, axis=0)
      cum_deviations[:, i] += max_diffs
    cum_deviations[:, i] /= num_distinct_factors
  normalized_deviations = cum_deviations / max_deviations[:, np.newaxis]
  irs_matrix = 1.0 - normalized_deviations
  disentanglement_scores = irs_matrix.max(axis=1)
  return np.average(disentanglement_scores, weights=max_deviations)


def _dlib_unsupervised(mus_train):  # unsupervised_metrics.unsupervised_metrics after sampling; Z x N
  scores = {}
  num_codes = mus_train.shape[0]
  cov_mus = np.cov(mus_train)
  scores['gaussian_total_correlation'] = 0.5 * (np.sum(np.log(np.diag(cov_mus))) - np.linalg.slogdet(cov_mus)[1])
  sqrtm = scipy.linalg.sqrtm(cov_mus * np.expand_dims(np.diag(cov_mus), axis=1))
  scores['gaussian_wasserstein_correlation'] = 2 * np.trace(cov_mus) - 2 * np.trace(sqrtm)
  scores['gaussian_wasserstein_correlation_norm'] = (scores['gaussian_wasserstein_correlation']
                                                     / np.sum(np.diag(cov_mus)))
  mus_discrete = _dlib_histogram_discretize(mus_train)
  mutual_info_matrix = _dlib_discrete_mutual_info(mus_discrete, mus_discrete)
  np.fill_diagonal(mutual_info_matrix, 0)
  scores['mutual_info_score'] = np.sum(mutual_info_matrix) / (num_codes**2 - num_codes)
  return scores


def _dlib_compute_loss(x_train, y_train, x_test, y_test, predictor_fn):  # downstream_task._compute_loss
  num_factors = y_train.shape[0]
  train_loss, test_loss = [], []
  for i in range(num_factors):
    model = predictor_fn()
    model.fit(x_train, y_train[i, :])
    train_loss.append(np.mean(model.predict(x_train) == y_train[i, :]))
    test_loss.append(np.mean(model.predict(x_test) == y_test[i, :]))
  return train_loss, test_loss


def _dlib_relative_strength_disentanglement(corr_matrix):  # udr.relative_strength_disentanglement
  score_x = np.nanmean(np.nan_to_num(np.power(np.ndarray.max(corr_matrix, axis=0), 2) / np.sum(corr_matrix, axis=0),
                                     0))
  score_y = np.nanmean(np.nan_to_num(np.power(np.ndarray.max(corr_matrix, axis=1), 2) / np.sum(corr_matrix, axis=1),
                                     0))
  return (score_x + score_y) / 2


def _dlib_spearman_correlation_conv(vec1, vec2):  # udr.spearman_correlation_conv
  corr_y = []
  for i in range(vec1.shape[1]):
    corr_x = []
    for j in range(vec2.shape[1]):
      corr, _ = stats.spearmanr(vec1[:, i], vec2[:, j], nan_policy='omit')
      corr_x.append(corr)
    corr_y.append(np.stack(corr_x))
  return np.transpose(np.absolute(np.stack(corr_y, axis=1)))


def _dlib_udr(inferred_model_reps, kl, correlation_matrix, random_state=0, kl_filter_threshold=0.01):
  """udr.compute_udr_sklearn after sampling the representations (N x Z each) and their KL (Z each)."""
  num_models = len(inferred_model_reps)
  kl_mask = []
  inferred_model_reps = list(inferred_model_reps)
  for i in range(num_models):
    scaler = preprocessing.StandardScaler()
    scaler.fit(inferred_model_reps[i])
    inferred_model_reps[i] = scaler.transform(inferred_model_reps[i])
    inferred_model_reps[i] = inferred_model_reps[i] * np.greater(kl[i], 0.01)
    kl_mask.append(kl[i] > kl_filter_threshold)
  disentanglement = np.zeros((num_models, num_models, 1))
  for i in range(num_models):
    for j in range(num_models):
      if i == j:
        continue
      if correlation_matrix == 'lasso':
        model = linear_model.Lasso(random_state=random_state, alpha=0.1)
        model.fit(inferred_model_reps[i], inferred_model_reps[j])
        corr_matrix = np.transpose(np.absolute(model.coef_))
      else:
        corr_matrix = _dlib_spearman_correlation_conv(inferred_model_reps[i], inferred_model_reps[j])
      corr_matrix = corr_matrix[kl_mask[i], ...][..., kl_mask[j]]
      disentanglement[i, j] = _dlib_relative_strength_disentanglement(corr_matrix)
  return [np.median(np.delete(disentanglement[:, i], i)) for i in range(num_models)]


# ---- IRS ----


def test_irs_on_constructed_codes(codes):
  f, _, c = codes
  scores = {k: disentanglement.irs(z, f) for k, (z, _) in c.items()}
  # each dimension is a function of one factor: it does not move while that factor is held
  assert scores['factors'] == pytest.approx(1.0) and scores['ignores_shape'] == pytest.approx(1.0)
  assert scores['rotated'] < 0.6 and scores['noise'] < 0.35
  assert disentanglement.irs(np.zeros((10, 3)), f[:10]) == 0.0  # no dimension varies


def test_irs_hand_computed():
  """Two factors, one code dimension ``z = v_0``: holding v_0 it does not move (score 1 for factor 0);
  z = v_0 + v_1 moves by half its range whichever factor is held."""
  factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
  assert disentanglement.irs(factors[:, :1] * 1.0, factors, diff_quantile=1.0) == pytest.approx(1.0)
  # z = v0 + v1 in {0, 1, 1, 2}: max deviation 1; holding either factor, |z - E[z|v]| = 0.5 -> 1 - 0.5
  assert disentanglement.irs(factors.sum(1, keepdims=True) * 1.0, factors, diff_quantile=1.0) == pytest.approx(0.5)


def test_irs_equals_dlib(codes):
  f, _, c = codes
  for z, _ in c.values():
    assert disentanglement.irs(z, f) == pytest.approx(_dlib_irs(z.T, f.T), abs=1e-12)
  wide = np.random.default_rng(3).integers(0, 40, (800, 2))  # factors with more values than bins
  z = wide + np.random.default_rng(4).normal(size=(800, 2))
  assert disentanglement.irs(z, wide) == pytest.approx(_dlib_irs(z.T, wide.T), abs=1e-12)


# ---- unsupervised scores ----


def test_unsupervised_on_constructed_codes(codes):
  _, _, c = codes
  u = {k: disentanglement.unsupervised(z) for k, (z, _) in c.items()}
  for name in ('factors', 'ignores_shape', 'noise'):  # independent dimensions: near 0
    assert u[name]['gaussian_total_correlation'] < 0.02 and u[name]['gaussian_wasserstein_correlation_norm'] < 0.01
  assert u['rotated']['gaussian_total_correlation'] > 0.1  # a rotation of unequal variances correlates them
  assert u['rotated']['mutual_info_score'] > 5 * u['factors']['mutual_info_score']


def test_unsupervised_hand_computed():
  """Two unit-variance dimensions of correlation rho: TC = -log(1 - rho^2) / 2 and W2^2 = 2 tr S - 2 tr(S
  diag S)^(1/2) computed by hand for S = [[1, rho], [rho, 1]]."""
  rho = 0.6
  x = np.random.default_rng(0).multivariate_normal([0, 0], [[1, rho], [rho, 1]], 4000)
  x = (x - x.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(x.T))).T  # exactly unit covariance ...
  x = x @ np.linalg.cholesky(np.array([[1, rho], [rho, 1]])).T  # ... then exactly S
  u = disentanglement.unsupervised(x)
  assert u['gaussian_total_correlation'] == pytest.approx(-0.5 * np.log(1 - rho ** 2))
  # (S diag S)^(1/2) = S^(1/2) for unit variances; its trace is sqrt(1 + rho) + sqrt(1 - rho)
  expected = 4 - 2 * (np.sqrt(1 + rho) + np.sqrt(1 - rho))
  assert u['gaussian_wasserstein_correlation'] == pytest.approx(expected)
  assert u['gaussian_wasserstein_correlation_norm'] == pytest.approx(expected / 2)
  with pytest.raises(ValueError, match='none constant'):
    disentanglement.unsupervised(np.stack([x[:, 0], np.ones(len(x))], 1))


def test_unsupervised_equals_dlib(codes):
  _, _, c = codes
  for z, _ in c.values():
    ours, theirs = disentanglement.unsupervised(z), _dlib_unsupervised(z.T)
    assert ours == pytest.approx({k: float(np.real(v)) for k, v in theirs.items()}, abs=1e-9)


# ---- downstream task ----


def test_downstream_on_constructed_codes(codes):
  """Gradient boosted trees (few, for speed) on 100 training codes: the factors and a code ignoring
  shape predict x and y perfectly, noise at chance (1/5), and shape from the code ignoring it near 1/3."""
  f, ft, c = codes
  scores = {k: disentanglement.downstream(z, f, zt, ft, sizes=(10, 100, 5000), models=('gbt',), gbt_estimators=5)
            for k, (z, zt) in c.items()}
  assert set(scores['factors']) >= {'gbt/10:mean_test_accuracy', 'gbt/100:min_train_accuracy',
                                    'gbt/100:test_accuracy_factor_4'}
  assert not any('5000' in key for key in scores['factors'])  # only sizes up to N
  assert scores['factors']['gbt/100:min_test_accuracy'] > 0.95
  assert scores['noise']['gbt/100:mean_test_accuracy'] < 0.45
  ignores = scores['ignores_shape']
  assert ignores['gbt/100:test_accuracy_factor_0'] < 0.5 and ignores['gbt/100:test_accuracy_factor_4'] > 0.95
  assert ignores['gbt/100:min_test_accuracy'] == ignores['gbt/100:test_accuracy_factor_0']


def test_downstream_equals_dlib(codes):
  """The logistic regression (dlib's ``logistic_regression_cv``) on a rotated code, one factor."""
  f, ft, c = codes
  z, zt = c['rotated']
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ours = disentanglement.downstream(z, f[:, 3:4], zt, ft[:, 3:4], sizes=(100,), models=('logistic_regression',))
    theirs = _dlib_compute_loss(z[:100], f[:100, 3:4].T, zt, ft[:, 3:4].T,
                                lambda: linear_model.LogisticRegressionCV(Cs=10, cv=model_selection.KFold(n_splits=5)))
  lr = 'logistic_regression/100:'
  assert ours[lr + 'train_accuracy_factor_0'] == pytest.approx(theirs[0][0])
  assert ours[lr + 'mean_test_accuracy'] == pytest.approx(theirs[1][0])
  assert 0.5 < theirs[1][0] <= 1.0  # x is linearly decodable from the rotated code


# ---- UDR ----


def _population(f, transform, noise=0.1, num=3):
  """``num`` models' codes of the same inputs: the factors plus noise, each through ``transform(seed, z)``."""
  return [transform(s, f * 1.0 + noise * np.random.default_rng(s).normal(size=f.shape)) for s in range(num)]


def test_udr_on_constructed_codes(codes):
  f = codes[0][:400]
  permuted = _population(f, lambda s, z: z[:, np.random.default_rng(s).permutation(5)])
  rotated = _population(f, lambda s, z: z @ np.linalg.qr(np.random.default_rng(s + 5).normal(size=(5, 5)))[0])
  noise = [np.random.default_rng(s).normal(size=(400, 5)) for s in range(3)]
  for correlation in ('spearman', 'lasso'):
    same = disentanglement.udr(permuted, correlation=correlation)  # the same axes in another order
    assert np.all(same > 0.7) and np.all(disentanglement.udr(noise, correlation=correlation) < 0.1)
    assert np.all(disentanglement.udr(rotated, correlation=correlation) < same.min() - 0.3)
  # one latent of a model inactive (KL below the threshold): left out, the others still match one to one
  kl = np.ones((3, 5))
  kl[0, 2] = 0.0
  assert disentanglement.udr(permuted, kl)[1:] == pytest.approx(disentanglement.udr(permuted)[1:], abs=0.2)
  kl[0] = 0.0  # a collapsed model (no latent above the threshold) scores 0 with every other
  pairwise = disentanglement.udr_pairwise(permuted, kl)
  assert np.all(pairwise[0] == 0) and np.all(pairwise[:, 0] == 0) and pairwise[1, 2] > 0.7


def test_udr_relative_strength_hand_computed():
  """Two models with the same two-dimensional code, Spearman correlation r between its dimensions: |R| =
  [[1, r], [r, 1]], so every row and column scores max^2 / sum = 1 / (1 + r) (Duan et al. 2020, Eq. 3)."""
  a = np.random.default_rng(0).normal(size=(200, 2))
  a[:, 1] += 0.5 * a[:, 0]
  r = abs(stats.spearmanr(a[:, 0], a[:, 1]).statistic)
  assert disentanglement.udr([a, a.copy()]) == pytest.approx([1 / (1 + r)] * 2)
  with pytest.raises(ValueError, match='M >= 2'):
    disentanglement.udr([a])


@pytest.mark.parametrize('correlation', ['spearman', 'lasso'])
def test_udr_equals_dlib(codes, correlation):
  f = codes[0][:300]
  models = _population(f, lambda s, z: z[:, np.random.default_rng(s).permutation(5)] @ np.diag([1, 2, 3, 4, 5.0]),
                       noise=0.5)
  models.append(np.random.default_rng(9).normal(size=(300, 5)))
  kl = np.abs(np.random.default_rng(2).normal(size=(4, 5)))
  kl[1, 3] = kl[3, 0] = 0.005  # below the threshold: filtered
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    ours = disentanglement.udr(models, kl, correlation=correlation)
    theirs = _dlib_udr(models, kl, correlation)
  np.testing.assert_allclose(ours, theirs, atol=1e-9)
