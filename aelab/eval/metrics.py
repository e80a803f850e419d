"""Metrics of a trained model: whole-split averages in one jitted call, the importance-sampled NLL,
active units, and codes as features (linear probe, k nearest neighbours, principal angles).

A model family's ``eval(params, x_BxD, key, hp)`` returns per-example metrics; here they are averaged
over the split (nats per example, or per pixel, as the family documents). Corruption and sampling in
evaluation use a fixed key, independent of the run's seed, so runs are compared on the same noise.
"""
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data

EVAL_SEED = 20_260_101


def padded_batches(x_MxD: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
  """``(x_NxBxD, mask_NxB)``: ``x`` split into ``N = ceil(M / B)`` batches of ``B = min(batch_size, M)``
  rows, the last padded with zeros; ``mask`` is False on the padding. A ``data.Labeled`` pair is split
  alike (labels ``y_NxB``)."""
  num = data.num_examples(x_MxD)
  bs = min(batch_size, num)
  num_batches = -(-num // bs)

  def split(a):
    padded = jnp.pad(a, ((0, num_batches * bs - num),) + ((0, 0),) * (a.ndim - 1))
    return padded.reshape(num_batches, bs, *a.shape[1:])

  mask = (jnp.arange(num_batches * bs) < num).reshape(num_batches, bs)
  return jax.tree.map(split, x_MxD), mask


def make_evaluate(eval_fn: Callable, batch_size: int, split_eval: Callable | None = None) -> Callable:
  """Returns jitted ``evaluate(params, x_MxD, hp) -> {name: mean over the M examples}``.

  The split goes in :func:`padded_batches` of ``batch_size``; padded rows are masked out.
  Batch ``i`` gets key ``fold_in(key(EVAL_SEED), i)``. A family's ``split_eval(params, x_MxD, hp)``
  (whole-split metrics, e.g. codebook perplexity) adds its values as they are.
  """

  @jax.jit
  def evaluate(params, x_MxD, hp):
    x_NxBxD, mask_NxB = padded_batches(x_MxD, batch_size)
    base_key = jax.random.key(EVAL_SEED)

    def batch_sums(args):
      i, x_BxD, mask_B = args
      per_example = eval_fn(params, x_BxD, jax.random.fold_in(base_key, i), hp)
      return {k: jnp.sum(jnp.where(mask_B, v, 0.0)) for k, v in per_example.items()}

    sums = jax.lax.map(batch_sums, (jnp.arange(mask_NxB.shape[0]), x_NxBxD, mask_NxB))
    means = {k: jnp.sum(v) / data.num_examples(x_MxD) for k, v in sums.items()}
    return means if split_eval is None else {**means, **split_eval(params, x_MxD, hp)}

  return evaluate


def active_units(mean_NxZ: jax.Array, threshold: float = 0.01) -> jax.Array:
  """Number of active latent units: dimensions ``u`` with ``Cov_x(E_q[z_u|x]) > threshold``.

  ``mean_NxZ``: posterior means ``E_q[z|x]`` (or deterministic codes) of ``N`` test examples.
  Source: Burda, Grosse & Salakhutdinov 2016 (Importance Weighted Autoencoders), Sec. 5.2, threshold 0.01.
  Returns an int32 scalar.
  """
  return jnp.sum(jnp.var(mean_NxZ, axis=0) > threshold).astype(jnp.int32)


# ---- Codes as features: linear probe and k-nearest neighbours (scikit-learn) ----


def _check_probe_inputs(z_train: np.ndarray, y_train, z_test: np.ndarray, y_test) -> None:
  """Raises ValueError when labels are missing, shapes disagree or codes are not finite."""
  if y_train is None or y_test is None:
    raise ValueError('A probe needs labels for both splits, but the dataset has none (y is None); '
                     'use a labelled source (digits, idx with a labels file, npz with y, csv with a label column).')
  for name, z, y in (('train', z_train, y_train), ('test', z_test, y_test)):
    if z.ndim != 2 or y.shape != (len(z),):
      raise ValueError(f'{name}: codes must be N x Z with N labels; got codes {z.shape}, labels {y.shape}.')
    if not np.all(np.isfinite(z)):
      raise ValueError(f'{name}: the codes contain NaN or infinite values; check the trained model.')
  if z_train.shape[1] != z_test.shape[1]:
    raise ValueError(f'train codes have {z_train.shape[1]} features, test codes {z_test.shape[1]}.')
  if len(np.unique(y_train)) < 2:
    raise ValueError('A probe needs at least two classes among the training labels.')


def linear_probe(z_train_NxZ, y_train_N, z_test_MxZ, y_test_M, c: float = 1.0,
                 max_iter: int = 1000) -> float:
  """Test accuracy (fraction in [0, 1]) of a logistic regression on frozen codes.

  The codes are standardized with the train statistics, then scikit-learn's multinomial
  ``LogisticRegression`` (L2, inverse strength ``c``, lbfgs) is fitted to ``(z_train, y_train)``.
  The linear evaluation protocol of representation learning (e.g. Vincent et al. 2010, Sec. 7.4 use
  SVMs on the codes; Alain & Bengio 2016 name it a linear classifier probe).
  Raises ValueError for missing labels, mismatched shapes, non-finite codes or fewer than two classes.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  z_train, z_test = np.asarray(z_train_NxZ, np.float64), np.asarray(z_test_MxZ, np.float64)
  _check_probe_inputs(z_train, y_train_N, z_test, y_test_M)
  probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
  probe.fit(z_train, y_train_N)
  return float(probe.score(z_test, y_test_M))


def knn_accuracy(z_train_NxZ, y_train_N, z_test_MxZ, y_test_M, k: int = 5) -> float:
  """Test accuracy (fraction in [0, 1]) of a ``k``-nearest-neighbour classifier (Euclidean, majority
  vote; scikit-learn ``KNeighborsClassifier``) on frozen codes, without rescaling them.

  Raises ValueError as :func:`linear_probe`, and when ``k`` is not in ``[1, N]``.
  """
  from sklearn.neighbors import KNeighborsClassifier  # pylint: disable=g-import-not-at-top
  z_train, z_test = np.asarray(z_train_NxZ, np.float64), np.asarray(z_test_MxZ, np.float64)
  _check_probe_inputs(z_train, y_train_N, z_test, y_test_M)
  if not 1 <= k <= len(z_train):
    raise ValueError(f'k={k} nearest neighbours needs 1 <= k <= {len(z_train)} (the training examples).')
  return float(KNeighborsClassifier(n_neighbors=k).fit(z_train, y_train_N).score(z_test, y_test_M))


def principal_angles_deg(a_DxK, b_DxJ) -> np.ndarray:
  """Principal angles between the column spaces of ``a`` and ``b`` (Bjorck & Golub 1973), in degrees,
  largest first (``min(K, J)`` of them); scipy's ``subspace_angles``. E.g. a linear autoencoder's
  decoder columns against the top principal directions: near 0 at the optimum (Baldi & Hornik 1989).
  Raises ValueError when the two do not have the same number ``D`` of rows."""
  from scipy.linalg import subspace_angles  # pylint: disable=g-import-not-at-top
  a, b = np.asarray(a_DxK, np.float64), np.asarray(b_DxJ, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
    raise ValueError(f'principal angles need two D x K bases with the same D; got {a.shape} and {b.shape}.')
  return np.degrees(subspace_angles(a, b))


def logsumexp_accumulate(acc_B: jax.Array, log_w_SxB: jax.Array) -> jax.Array:
  """``log(exp(acc) + sum_s exp(log_w_s))`` per example, in float32 without overflow (each chunk is
  max-shifted by ``jax.nn.logsumexp``, chunks combine with ``logaddexp``); ``acc = -inf`` starts a sum."""
  return jnp.logaddexp(acc_B, jax.nn.logsumexp(log_w_SxB.astype(jnp.float32), axis=0))


def make_importance_nll(log_weights: Callable, num_samples: int, batch_size: int = 50,
                        chunk_size: int = 200) -> Callable:
  """Jitted ``nll(params, x_MxD, key) -> M``: ``-log (1/k sum_i w_i)`` per example, nats, with
  ``k = num_samples`` importance samples from ``q(z|x)`` (Burda et al. 2016, Eq. 8; the IWAE bound
  ``L_k``, which rises to ``log p(x)`` as ``k`` grows, so this estimate of ``-log p(x)`` falls with ``k``).

  ``log_weights(params, x_BxD, key, s) -> s x B`` (a family's ``make_log_weights``). Examples go in
  batches of ``batch_size`` and samples in chunks of ``chunk_size`` (memory ``~ batch x chunk x D``),
  accumulated with :func:`logsumexp_accumulate`. Raises ValueError when ``num_samples < 1``.
  """
  if num_samples < 1:
    raise ValueError(f'num_samples={num_samples}: the importance-sampled NLL needs k >= 1 samples.')
  chunk = min(chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk)

  @jax.jit
  def nll(params, x_MxD, key):
    x_padded, mask_NxB = padded_batches(x_MxD, batch_size)
    bs = mask_NxB.shape[1]

    def batch_nll(args):
      i, x_BxD = args

      def add_chunk(acc_B, j):
        log_w = log_weights(params, x_BxD, jax.random.fold_in(jax.random.fold_in(key, i), j), chunk)
        in_range = (j * chunk + jnp.arange(chunk) < num_samples)[:, None]
        return logsumexp_accumulate(acc_B, jnp.where(in_range, log_w, -jnp.inf)), None

      acc, _ = jax.lax.scan(add_chunk, jnp.full((bs,), -jnp.inf, jnp.float32), jnp.arange(num_chunks))
      return -(acc - math.log(num_samples))

    return jax.lax.map(batch_nll, (jnp.arange(mask_NxB.shape[0]), x_padded)).reshape(-1)[:data.num_examples(x_MxD)]

  return nll


def encode_split(encode: Callable, params, x_MxD: jax.Array, batch_size: int = 1000) -> jax.Array:
  """Codes ``encode(params, x_BxD)`` of a whole split in :func:`padded_batches`: ``z_MxZ`` (traceable:
  call it inside a jitted function, or wrap it in ``jax.jit``)."""
  x_NxBxD, _ = padded_batches(x_MxD, batch_size)
  z_NxBxZ = jax.lax.map(lambda x_BxD: encode(params, x_BxD), x_NxBxD)
  return z_NxBxZ.reshape(-1, z_NxBxZ.shape[-1])[:data.num_examples(x_MxD)]
