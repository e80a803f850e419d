"""Disentanglement metrics of codes against ground-truth factors, as Locatello et al. 2019 (Challenging
Common Assumptions in the Unsupervised Learning of Disentangled Representations, Appendix C) define them
and google-research/disentanglement_lib (``evaluation/metrics/*.py``) computes them.

Plain functions of numpy arrays: ``codes_NxZ`` (float, e.g. posterior means) and ``factors_NxK``
(integer factor values, one column per factor). :func:`mig`, :func:`sap`, :func:`dci` and
:func:`modularity` score given codes; :func:`beta_vae_score` and :func:`factor_vae_score` draw their own
batches through an ``encode(x_NxD) -> codes_NxZ`` callable and a factor sampler (``sample_factors(num,
rng) -> factors_NxK``, ``images(factors_NxK) -> x_NxD`` and ``counts``, e.g. ``aelab.data.shapes2d.Shapes2D``).
Scores lie in [0, 1], higher is better. Each raises ValueError for inputs of the wrong shape.
"""
from typing import Any, Callable, Protocol

import numpy as np

_POINTS_PER_CALL = 64  # score points (each a batch of images) per encode call
NUM_BINS = 20  # equal-width bins per code dimension for the discrete mutual information


class FactorSampler(Protocol):
  counts: tuple[int, ...]

  def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray: ...

  def images(self, factors_NxK: np.ndarray) -> np.ndarray: ...


def _check(codes_NxZ, factors_NxK, what: str = 'codes') -> tuple[np.ndarray, np.ndarray]:
  codes, factors = np.asarray(codes_NxZ, np.float64), np.asarray(factors_NxK)
  if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
    raise ValueError(f'{what} must be N x Z and factors N x K with the same N; got {codes.shape} and {factors.shape}.')
  if not np.all(np.isfinite(codes)):
    raise ValueError(f'{what} contain NaN or infinite values; check the trained model.')
  if not np.issubdtype(factors.dtype, np.integer):
    raise ValueError(f'factors must be integer factor values, got dtype {factors.dtype}.')
  return codes, factors


def _check_codes(codes_NxZ, what: str = 'codes') -> np.ndarray:
  codes = np.asarray(codes_NxZ, np.float64)
  if codes.ndim != 2:
    raise ValueError(f'{what} must be N x Z, got shape {codes.shape}.')
  return _check(codes, np.zeros((len(codes), 1), np.int64), what)[0]


def discretize(codes_NxZ: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
  """Each code dimension binned into ``num_bins`` equal-width bins over its range: int ``N x Z``
  (disentanglement_lib ``utils.make_discretizer`` / ``_histogram_discretize``)."""
  codes = np.asarray(codes_NxZ, np.float64)
  out = np.zeros(codes.shape, np.int64)
  for j in range(codes.shape[1]):
    out[:, j] = np.digitize(codes[:, j], np.histogram(codes[:, j], num_bins)[1][:-1])
  return out


def mutual_info_matrix(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
  """``I(z_j; v_k)`` in nats between each discretized code dimension and each factor: ``Z x K``
  (scikit-learn's ``mutual_info_score`` on the contingency table)."""
  from sklearn.metrics import mutual_info_score  # pylint: disable=g-import-not-at-top
  codes, factors = _check(codes_NxZ, factors_NxK)
  binned = discretize(codes, num_bins)
  return np.array([[mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
                   for j in range(codes.shape[1])])


def factor_entropy(factors_NxK: np.ndarray) -> np.ndarray:
  """Empirical entropy of each factor, nats: ``K``."""
  from sklearn.metrics import mutual_info_score  # pylint: disable=g-import-not-at-top
  factors = np.asarray(factors_NxK)
  return np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def mig(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, num_bins: int = NUM_BINS) -> float:
  """Mutual Information Gap (Chen et al. 2018, Isolating Sources of Disentanglement in VAEs, Eq. 6):
  ``mean_k (I(z_a; v_k) - I(z_b; v_k)) / H(v_k)`` with ``a``, ``b`` the code dimensions of largest and
  second largest mutual information with factor ``k``, on codes in ``num_bins`` equal-width bins.
  Needs at least two code dimensions; constant factors are skipped."""
  codes, factors = _check(codes_NxZ, factors_NxK)
  if codes.shape[1] < 2:
    raise ValueError('MIG compares the two most informative code dimensions: it needs Z >= 2.')
  mi = mutual_info_matrix(codes, factors, num_bins)
  entropy = factor_entropy(factors)
  top = np.sort(mi, axis=0)[::-1]
  varying = entropy > 0
  return float(np.mean((top[0] - top[1])[varying] / entropy[varying]))


def modularity(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, num_bins: int = NUM_BINS) -> float:
  """Modularity (Ridgeway & Tomko 2018, Learning Deep Disentangled Embeddings with the F-Statistic Loss,
  Sec. 3): per code dimension ``1 - (sum_k m_k^2 - max_k m_k^2) / (max_k m_k^2 (K - 1))`` with ``m`` its
  mutual information with each factor, 0 for a dimension with no information; the mean over dimensions.
  Needs K >= 2 factors."""
  codes, factors = _check(codes_NxZ, factors_NxK)
  if factors.shape[1] < 2:
    raise ValueError('modularity compares a code dimension\'s information across factors: it needs K >= 2.')
  squared = np.square(mutual_info_matrix(codes, factors, num_bins))
  peak = np.max(squared, axis=1)
  delta = (np.sum(squared, axis=1) - peak) / np.where(peak > 0, peak * (squared.shape[1] - 1.0), 1.0)
  return float(np.mean(np.where(peak > 0, 1.0 - delta, 0.0)))


def sap(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, codes_test_MxZ: np.ndarray,
        factors_test_MxK: np.ndarray, c: float = 0.01) -> float:
  """Separated Attribute Predictability (Kumar et al. 2018, Variational Inference of Disentangled Latent
  Concepts from Unlabeled Observations, Sec. 3): for each factor, the test accuracy of a linear SVM
  (``LinearSVC(C=c, class_weight='balanced')``) predicting it from each single code dimension; the mean
  over factors of the gap between the best and second best dimension. Constant code dimensions score 0."""
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  codes, factors = _check(codes_NxZ, factors_NxK)
  codes_test, factors_test = _check(codes_test_MxZ, factors_test_MxK, 'test codes')
  score = np.zeros((codes.shape[1], factors.shape[1]))
  for j in range(codes.shape[1]):
    if np.std(codes[:, j]) < 1e-12:
      continue
    for k in range(factors.shape[1]):
      if len(np.unique(factors[:, k])) < 2:
        continue
      svm = LinearSVC(C=c, class_weight='balanced').fit(codes[:, j:j + 1], factors[:, k])
      score[j, k] = np.mean(svm.predict(codes_test[:, j:j + 1]) == factors_test[:, k])
  top = np.sort(score, axis=0)[::-1]
  return float(np.mean(top[0] - top[1])) if codes.shape[1] > 1 else float(np.mean(top[0]))


def _importance_matrix(codes, factors, codes_test, factors_test, model: str):
  """``(R_ZxK, train accuracy K, test accuracy K)``: feature importances of one classifier per factor."""
  from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # pylint: disable=g-import-not-at-top
  importance = np.zeros((codes.shape[1], factors.shape[1]))
  train_acc, test_acc = [], []
  for k in range(factors.shape[1]):
    if model == 'gbt':
      clf = GradientBoostingClassifier(random_state=0)
    elif model == 'forest':
      clf = RandomForestClassifier(n_estimators=20, max_features=None, min_samples_leaf=5, random_state=0)
    else:
      raise ValueError(f'dci model={model!r}: choose gbt (as disentanglement_lib) or forest (faster).')
    if len(np.unique(factors[:, k])) < 2:
      train_acc.append(1.0)
      test_acc.append(1.0)
      continue
    clf.fit(codes, factors[:, k])
    importance[:, k] = np.abs(clf.feature_importances_)
    train_acc.append(np.mean(clf.predict(codes) == factors[:, k]))
    test_acc.append(np.mean(clf.predict(codes_test) == factors_test[:, k]))
  return importance, np.array(train_acc), np.array(test_acc)


def _normalized_entropy(p_RxC: np.ndarray) -> np.ndarray:
  """Entropy of each row of ``p`` (normalized to sum 1) with logarithms to base ``C``: ``R``."""
  p = p_RxC / np.maximum(np.sum(p_RxC, axis=1, keepdims=True), 1e-11)
  logs = np.log(np.where(p > 0, p, 1.0)) / np.log(p.shape[1])
  return -np.sum(p * logs, axis=1)


def dci(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, codes_test_MxZ: np.ndarray, factors_test_MxK: np.ndarray,
        model: str = 'gbt') -> dict[str, float]:
  """DCI (Eastwood & Williams 2018, A Framework for the Quantitative Evaluation of Disentangled
  Representations): importances ``R_jk`` of code dimension ``j`` for predicting factor ``k`` from
  one classifier per factor (``gbt``: scikit-learn's ``GradientBoostingClassifier`` with defaults, as
  disentanglement_lib; ``forest``: a 20-tree random forest choosing among all dimensions at each split,
  faster). ``disentanglement``: ``sum_j
  rho_j (1 - H_K(R_j.))`` with ``rho_j`` dimension ``j``'s share of all importance; ``completeness``:
  ``sum_k rho_k (1 - H_Z(R_.k))``; ``informativeness``: the mean test accuracy of the classifiers.
  Needs Z >= 2 and K >= 2 (entropies to base Z and K)."""
  codes, factors = _check(codes_NxZ, factors_NxK)
  codes_test, factors_test = _check(codes_test_MxZ, factors_test_MxK, 'test codes')
  if codes.shape[1] < 2 or factors.shape[1] < 2:
    raise ValueError(f'DCI needs Z >= 2 code dimensions and K >= 2 factors, got {codes.shape[1]} and '
                     f'{factors.shape[1]}.')
  importance, _, test_acc = _importance_matrix(codes, factors, codes_test, factors_test, model)
  total = np.sum(importance)
  if total == 0:
    return {'disentanglement': 0.0, 'completeness': 0.0, 'informativeness': float(np.mean(test_acc))}
  d = np.sum((1.0 - _normalized_entropy(importance)) * np.sum(importance, axis=1) / total)
  c = np.sum((1.0 - _normalized_entropy(importance.T)) * np.sum(importance, axis=0) / total)
  return {'disentanglement': float(d), 'completeness': float(c), 'informativeness': float(np.mean(test_acc))}


def _irs_matrix(codes: np.ndarray, factors: np.ndarray, diff_quantile: float) -> tuple[np.ndarray, np.ndarray]:
  """``(1 - normalized deviation)_ZxK, max deviation_Z``: for each factor ``k`` and code dimension ``j``,
  the ``diff_quantile`` quantile of ``|z_j - E[z_j | v_k]|`` within each value of ``v_k``, averaged over
  the values, over the largest ``|z_j - E[z_j]|``."""
  max_dev_Z = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)
  deviation_ZxK = np.zeros((codes.shape[1], factors.shape[1]))
  for k in range(factors.shape[1]):
    values = np.unique(factors[:, k])
    for value in values:
      group = codes[factors[:, k] == value]
      deviation_ZxK[:, k] += np.quantile(np.abs(group - group.mean(axis=0)), diff_quantile, axis=0)
    deviation_ZxK[:, k] /= len(values)
  return 1.0 - deviation_ZxK / max_dev_Z[:, None], max_dev_Z


def irs(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, diff_quantile: float = 0.99,
        num_bins: int = NUM_BINS) -> float:
  """Interventional Robustness Score (Suter et al. 2019, Robustly Disentangled Causal Mechanisms, Def. 5, in
  disentanglement_lib's scalable form ``irs.py``): per code dimension ``j``, ``max_k 1 - D_jk / max|z_j -
  E z_j|`` with ``D_jk`` the mean over the values of factor ``k`` of the ``diff_quantile`` quantile of
  ``|z_j - E[z_j | v_k]|`` (how far the dimension moves when every factor but ``k`` changes); the mean
  over dimensions weighted by their largest deviation. Factors are binned as the codes are
  (:func:`discretize`, ``num_bins``; integers with at most ``num_bins`` values keep their values); constant
  code dimensions are dropped, and a code with none varying scores 0. In [0, 1], higher is better."""
  codes, factors = _check(codes_NxZ, factors_NxK)
  active = codes[:, np.var(codes, axis=0) > 0]
  if active.shape[1] == 0:
    return 0.0
  irs_ZxK, max_dev_Z = _irs_matrix(active, discretize(factors, num_bins), diff_quantile)
  return float(np.average(np.max(irs_ZxK, axis=1), weights=max_dev_Z))


def unsupervised(codes_NxZ: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, float]:
  """Unsupervised scores of a code, no factors needed (Locatello et al. 2019, Sec. 6; disentanglement_lib
  ``unsupervised_metrics.py``), from the codes' covariance ``S`` (``np.cov``, ``Z x Z``):

  - ``gaussian_total_correlation``: ``KL(N(0, S) || N(0, diag S)) = (sum_j log S_jj - log det S) / 2``,
    nats (0 for uncorrelated dimensions);
  - ``gaussian_wasserstein_correlation``: the squared 2-Wasserstein distance between those two
    Gaussians, ``2 tr S - 2 tr (S diag(S))^(1/2)`` (units of the code squared);
    ``gaussian_wasserstein_correlation_norm``: the same over ``tr S``;
  - ``mutual_info_score``: the mean over pairs ``i != j`` of ``I(z_i; z_j)``, nats, on codes in
    ``num_bins`` equal-width bins.

  Lower is more factorized. Needs Z >= 2 dimensions, none constant (``log S_jj``); raises ValueError."""
  import scipy.linalg  # pylint: disable=g-import-not-at-top
  codes = _check_codes(codes_NxZ)
  cov_ZxZ = np.cov(codes.T)
  if codes.shape[1] < 2 or np.any(np.diag(cov_ZxZ) <= 0):
    raise ValueError(f'unsupervised scores need Z >= 2 code dimensions, none constant; got variances '
                     f'{np.round(np.diag(np.atleast_2d(cov_ZxZ)), 6).tolist()}.')
  tc = 0.5 * (np.sum(np.log(np.diag(cov_ZxZ))) - np.linalg.slogdet(cov_ZxZ)[1])
  wasserstein = 2 * np.trace(cov_ZxZ) - 2 * np.trace(scipy.linalg.sqrtm(cov_ZxZ * np.diag(cov_ZxZ)[:, None])).real
  binned = discretize(codes, num_bins)
  mi_ZxZ = mutual_info_matrix(codes, binned, num_bins)
  np.fill_diagonal(mi_ZxZ, 0.0)
  z = codes.shape[1]
  return {'gaussian_total_correlation': float(tc), 'gaussian_wasserstein_correlation': float(wasserstein),
          'gaussian_wasserstein_correlation_norm': float(wasserstein / np.trace(cov_ZxZ)),
          'mutual_info_score': float(np.sum(mi_ZxZ) / (z * z - z))}


def _predictor(model: str, gbt_estimators: int):
  from sklearn.ensemble import GradientBoostingClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegressionCV  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import KFold  # pylint: disable=g-import-not-at-top
  if model == 'logistic_regression':
    return LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))
  if model == 'gbt':
    return GradientBoostingClassifier(n_estimators=gbt_estimators, random_state=0)
  raise ValueError(f'downstream model={model!r}: choose logistic_regression or gbt.')


def _accuracies(model: str, codes, factors, codes_test, factors_test, gbt_estimators: int):
  """Train and test accuracy of one ``model`` per factor: two lists of ``K``. A factor with one value in
  the training codes is predicted as that value."""
  train, test = [], []
  for k in range(factors.shape[1]):
    if len(np.unique(factors[:, k])) < 2:
      predict = lambda z, v=factors[0, k]: np.full(len(z), v)  # noqa: E731
    else:
      predict = _predictor(model, gbt_estimators).fit(codes, factors[:, k]).predict
    train.append(float(np.mean(predict(codes) == factors[:, k])))
    test.append(float(np.mean(predict(codes_test) == factors_test[:, k])))
  return train, test


def downstream(codes_NxZ: np.ndarray, factors_NxK: np.ndarray, codes_test_MxZ: np.ndarray,
               factors_test_MxK: np.ndarray, sizes: tuple[int, ...] = (10, 100, 1000, 10000),
               models: tuple[str, ...] = ('logistic_regression', 'gbt'), gbt_estimators: int = 100
               ) -> dict[str, float]:
  """Downstream classification (Locatello et al. 2019, Sec. 7; disentanglement_lib ``downstream_task.py``):
  per model and training size ``n`` in ``sizes`` (those <= N), one classifier per factor trained on the
  first ``n`` codes and tested on all ``M`` test codes. ``logistic_regression``: scikit-learn's
  ``LogisticRegressionCV(Cs=10, cv=KFold(5))``; ``gbt``: ``GradientBoostingClassifier`` with
  ``gbt_estimators`` trees (100, dlib's default; fewer is faster). Returns keys
  ``'<model>/<n>:mean_train_accuracy'``, ``':mean_test_accuracy'``, ``':min_train_accuracy'``,
  ``':min_test_accuracy'``, ``':train_accuracy_factor_<k>'`` and ``':test_accuracy_factor_<k>'``
  (accuracies in [0, 1]). The codes' rows must be in random order (the first ``n`` are a sample)."""
  codes, factors = _check(codes_NxZ, factors_NxK)
  codes_test, factors_test = _check(codes_test_MxZ, factors_test_MxK, 'test codes')
  scores = {}
  for model in models:
    for n in (n for n in sizes if n <= len(codes)):
      train, test = _accuracies(model, codes[:n], factors[:n], codes_test, factors_test, gbt_estimators)
      prefix = f'{model}/{n}:'
      scores.update({prefix + 'mean_train_accuracy': float(np.mean(train)),
                     prefix + 'mean_test_accuracy': float(np.mean(test)),
                     prefix + 'min_train_accuracy': min(train), prefix + 'min_test_accuracy': min(test)})
      scores.update({f'{prefix}train_accuracy_factor_{k}': a for k, a in enumerate(train)})
      scores.update({f'{prefix}test_accuracy_factor_{k}': a for k, a in enumerate(test)})
  return scores


def _udr_similarity_ZxZ(a_NxZ: np.ndarray, b_NxZ: np.ndarray, correlation: str, seed: int) -> np.ndarray:
  """``|R|``: row ``i`` a dimension of ``a``, column ``j`` of ``b``; Spearman's rank correlation or the
  absolute coefficients of a Lasso (alpha 0.1) regressing ``b`` on ``a``."""
  if correlation == 'spearman':  # Pearson's correlation of the ranks; NaN for a constant dimension
    from scipy import stats  # pylint: disable=g-import-not-at-top
    ranks = [stats.rankdata(x, axis=0) for x in (a_NxZ, b_NxZ)]
    with np.errstate(invalid='ignore', divide='ignore'):
      ra, rb = [(r - r.mean(0)) / r.std(0) for r in ranks]
      return np.abs(ra.T @ rb / len(ra))
  if correlation == 'lasso':
    from sklearn.linear_model import Lasso  # pylint: disable=g-import-not-at-top
    return np.abs(Lasso(alpha=0.1, random_state=seed).fit(a_NxZ, b_NxZ).coef_).T
  raise ValueError(f'udr correlation={correlation!r}: choose spearman or lasso.')


def _relative_strength(r_AxB: np.ndarray) -> float:
  """Duan et al. 2020, Eq. 3: the mean over columns and over rows of ``max^2 / sum``, averaged; 0 when a
  model has no active dimension (disentanglement_lib raises there)."""
  if r_AxB.size == 0:
    return 0.0
  with np.errstate(invalid='ignore', divide='ignore'):
    columns = np.nanmean(np.nan_to_num(np.max(r_AxB, axis=0) ** 2 / np.sum(r_AxB, axis=0), nan=0.0))
    rows = np.nanmean(np.nan_to_num(np.max(r_AxB, axis=1) ** 2 / np.sum(r_AxB, axis=1), nan=0.0))
  return float((columns + rows) / 2)


def udr_pairwise(codes_of_models: list, kl_of_models: list | None = None, correlation: str = 'spearman',
                 kl_threshold: float = 0.01, seed: int = 0) -> np.ndarray:
  """UDR's pairwise scores ``M x M`` (Duan et al. 2020, Unsupervised Model Selection for Variational
  Disentangled Representation Learning, Sec. 3; disentanglement_lib ``udr/metrics/udr.py``): entry
  ``(i, j)`` the relative strength of the similarity matrix between model ``i``'s and model ``j``'s codes
  of the same ``N`` inputs (each dimension standardized; dimensions whose mean KL per example ``kl_of_models``
  (``M x Z``, nats) is at most ``kl_threshold`` zeroed and left out); diagonal 0. ``kl_of_models=None``
  keeps every dimension."""
  codes = [_check_codes(c) for c in codes_of_models]
  if len(codes) < 2 or any(c.shape != codes[0].shape for c in codes):
    raise ValueError(f'udr compares M >= 2 models\' codes of the same N inputs, all N x Z; got '
                     f'{[c.shape for c in codes]}.')
  kl = np.ones((len(codes), codes[0].shape[1])) if kl_of_models is None else np.asarray(kl_of_models, np.float64)
  active = [kl_m > kl_threshold for kl_m in kl]
  std = [np.std(c, axis=0) for c in codes]
  scaled = [(c - c.mean(0)) / np.where(s > 0, s, 1.0) * (k > 0.01) for c, s, k in zip(codes, std, kl)]
  pairwise = np.zeros((len(codes), len(codes)))
  for i, j in ((i, j) for i in range(len(codes)) for j in range(len(codes)) if i != j):
    r = _udr_similarity_ZxZ(scaled[i], scaled[j], correlation, seed)
    pairwise[i, j] = _relative_strength(r[active[i]][:, active[j]])
  return pairwise


def udr(codes_of_models: list, kl_of_models: list | None = None, correlation: str = 'spearman',
        kl_threshold: float = 0.01, seed: int = 0) -> np.ndarray:
  """UDR score of each of ``M`` models (Duan et al. 2020, Sec. 3): the median over the other models of
  :func:`udr_pairwise` ``(j, i)``. ``codes_of_models``: ``M`` arrays ``N x Z``, the codes of the same
  inputs by models of one population that differ in their seed; ``correlation``: ``spearman``
  (UDR_S) or ``lasso`` (UDR_L). Returns ``M`` scores in [0, 1], higher is more disentangled."""
  pairwise = udr_pairwise(codes_of_models, kl_of_models, correlation, kl_threshold, seed)
  return np.array([np.median(np.delete(pairwise[:, i], i)) for i in range(len(pairwise))])


# ---- Scores that intervene on the factors: an encoder and a factor sampler ----


def _fixed_factor_batch(sampler: FactorSampler, k: int, batch_size: int, rng: np.random.Generator,
                        pairs: bool) -> tuple[np.ndarray, ...]:
  """A batch of factors with factor ``k`` held at one random value (``pairs``: two such batches
  sharing factor ``k`` row by row, the BetaVAE score's pairs)."""
  first = sampler.sample_factors(batch_size, rng)
  if not pairs:
    first[:, k] = first[0, k]
    return (first,)
  second = sampler.sample_factors(batch_size, rng)
  second[:, k] = first[:, k]
  return first, second


def beta_vae_score(encode: Callable[[np.ndarray], np.ndarray], sampler: FactorSampler, rng: np.random.Generator,
                   batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000) -> dict[str, float]:
  """BetaVAE score (Higgins et al. 2017, beta-VAE, Sec. 3): each point picks a factor ``k`` at random,
  encodes ``batch_size`` pairs of images that share factor ``k``, and takes the mean absolute
  difference of the pair's codes (``Z`` features); a logistic regression learns ``k`` from it.
  Returns ``{'train_accuracy', 'eval_accuracy'}`` on ``num_train`` / ``num_eval`` points
  (disentanglement_lib ``beta_vae.py``)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

  def points(num):
    labels = rng.integers(0, len(sampler.counts), num)
    feats = []
    for start in range(0, num, _POINTS_PER_CALL):  # one encode call per chunk of points
      ks = labels[start:start + _POINTS_PER_CALL]
      chunk = [_fixed_factor_batch(sampler, int(k), batch_size, rng, pairs=True) for k in ks]
      z = np.asarray(encode(sampler.images(np.concatenate([np.concatenate(p) for p in chunk]))))
      z = z.reshape(len(chunk), 2, batch_size, -1)
      feats.append(np.mean(np.abs(z[:, 0] - z[:, 1]), axis=1))
    return np.concatenate(feats), labels

  x_train, y_train = points(num_train)
  x_eval, y_eval = points(num_eval)
  clf = LogisticRegression(max_iter=1000).fit(x_train, y_train)
  return {'train_accuracy': float(clf.score(x_train, y_train)), 'eval_accuracy': float(clf.score(x_eval, y_eval))}


def factor_vae_score(encode: Callable[[np.ndarray], np.ndarray], sampler: FactorSampler, rng: np.random.Generator,
                     batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                     num_variance_estimate: int = 10000) -> dict[str, float]:
  """FactorVAE score (Kim & Mnih 2018, Disentangling by Factorising, Sec. 4): codes are scaled by their
  global standard deviation (dimensions with zero variance dropped); each vote fixes a random factor
  ``k`` over a batch and votes ``(k, argmin_j Var_batch(z_j) / Var(z_j))``; a majority-vote classifier
  maps each dimension to a factor. Returns ``{'train_accuracy', 'eval_accuracy', 'num_active_dims'}``
  (disentanglement_lib ``factor_vae.py``; 0 when no dimension varies)."""
  global_var = np.var(np.asarray(encode(sampler.images(sampler.sample_factors(num_variance_estimate, rng)))),
                      axis=0, ddof=1)
  active = np.sqrt(global_var) > 0.0
  if not active.any():
    return {'train_accuracy': 0.0, 'eval_accuracy': 0.0, 'num_active_dims': 0}

  def votes(num):
    table = np.zeros((len(sampler.counts), len(global_var)), np.int64)
    labels = rng.integers(0, len(sampler.counts), num)
    for start in range(0, num, _POINTS_PER_CALL):  # one encode call per chunk of votes
      ks = labels[start:start + _POINTS_PER_CALL]
      factors = np.concatenate([_fixed_factor_batch(sampler, int(k), batch_size, rng, pairs=False)[0] for k in ks])
      z = np.asarray(encode(sampler.images(factors))).reshape(len(ks), batch_size, -1)
      local_var = np.var(z, axis=1, ddof=1)
      best = np.flatnonzero(active)[np.argmin(local_var[:, active] / global_var[active], axis=1)]
      np.add.at(table, (ks, best), 1)
    return table

  train_votes = votes(num_train)
  classifier = np.argmax(train_votes, axis=0)
  accuracy = lambda t: float(np.sum(t[classifier, np.arange(t.shape[1])]) / max(np.sum(t), 1))  # noqa: E731
  return {'train_accuracy': accuracy(train_votes), 'eval_accuracy': accuracy(votes(num_eval)),
          'num_active_dims': int(active.sum())}


def evaluate(encode: Callable[[np.ndarray], np.ndarray], sampler: FactorSampler, seed: int = 0,
             num_train: int = 10000, num_test: int = 5000, score_points: tuple[int, int] = (10000, 5000),
             dci_model: str = 'gbt') -> dict[str, Any]:
  """All metrics of one encoder on fresh samples of ``sampler`` (disentanglement_lib's protocol: MIG and
  modularity on ``num_train`` codes; SAP and DCI trained on those, tested on ``num_test`` more; the two
  scores on ``score_points = (train, eval)`` points each; IRS and the unsupervised scores on the
  ``num_train`` codes). Returns ``test/<metric>`` keys: ``mig``, ``sap``, ``dci_disentanglement``,
  ``dci_completeness``, ``dci_informativeness``, ``modularity``, ``beta_vae_score``,
  ``factor_vae_score`` (the eval accuracies), ``irs`` and the keys of :func:`unsupervised` (NaN where a
  code dimension is constant)."""
  rng = np.random.default_rng(seed)
  f_train = sampler.sample_factors(num_train, rng)
  f_test = sampler.sample_factors(num_test, rng)
  z_train, z_test = np.asarray(encode(sampler.images(f_train))), np.asarray(encode(sampler.images(f_test)))
  d = dci(z_train, f_train, z_test, f_test, dci_model)
  n_train, n_eval = score_points
  beta = beta_vae_score(encode, sampler, rng, num_train=n_train, num_eval=n_eval)
  factor = factor_vae_score(encode, sampler, rng, num_train=n_train, num_eval=n_eval, num_variance_estimate=num_train)
  return {'test/mig': mig(z_train, f_train), 'test/sap': sap(z_train, f_train, z_test, f_test),
          'test/dci_disentanglement': d['disentanglement'], 'test/dci_completeness': d['completeness'],
          'test/dci_informativeness': d['informativeness'], 'test/modularity': modularity(z_train, f_train),
          'test/beta_vae_score': beta['eval_accuracy'], 'test/factor_vae_score': factor['eval_accuracy'],
          'test/irs': irs(z_train, f_train), **{f'test/{k}': v for k, v in _unsupervised_or_nan(z_train).items()}}


UNSUPERVISED = ('gaussian_total_correlation', 'gaussian_wasserstein_correlation',
                'gaussian_wasserstein_correlation_norm', 'mutual_info_score')


def _unsupervised_or_nan(codes_NxZ: np.ndarray) -> dict[str, float]:
  """:func:`unsupervised`, or NaN for each score where it is undefined (a constant code dimension, Z < 2)."""
  try:
    return unsupervised(codes_NxZ)
  except ValueError:
    return dict.fromkeys(UNSUPERVISED, float('nan'))
