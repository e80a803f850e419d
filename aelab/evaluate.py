"""Metrics of a trained model on a whole split, in one jitted call.

A model family's ``eval_fn(params, x_BxD, key, hp)`` returns per-example metrics; here they are averaged
over the split (nats per example, or per pixel, as the family documents). Corruption and sampling in
evaluation use a fixed key, independent of the run's seed, so runs are compared on the same noise.

Generative metrics (VAE): the importance-sampled negative log-likelihood ``-log p(x)`` with ``k``
samples (Burda et al. 2016), and the number of active latent units. Standalone, on a workdir's latest
checkpoint (writes ``test/nll``, ``test/nll_k``, ``test/active_units`` into its summary.json)::

  python -m aelab.evaluate --workdir=runs/vae_mnist [--k=5000]
"""
import argparse
import json
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

EVAL_SEED = 20_260_101


def make_evaluate(eval_fn: Callable, batch_size: int) -> Callable:
  """Returns jitted ``evaluate(params, x_MxD, hp) -> {name: mean over the M examples}``.

  The split is padded to whole batches of ``batch_size`` (at most ``M``); padded rows are masked out.
  Batch ``i`` gets key ``fold_in(key(EVAL_SEED), i)``.
  """

  @jax.jit
  def evaluate(params, x_MxD, hp):
    num = x_MxD.shape[0]
    bs = min(batch_size, num)
    num_batches = -(-num // bs)
    x_padded = jnp.pad(x_MxD, ((0, num_batches * bs - num), (0, 0)))
    mask = (jnp.arange(num_batches * bs) < num).reshape(num_batches, bs)
    base_key = jax.random.key(EVAL_SEED)

    def batch_sums(args):
      i, x_BxD, mask_B = args
      per_example = eval_fn(params, x_BxD, jax.random.fold_in(base_key, i), hp)
      return {k: jnp.sum(jnp.where(mask_B, v, 0.0)) for k, v in per_example.items()}

    sums = jax.lax.map(batch_sums, (jnp.arange(num_batches), x_padded.reshape(num_batches, bs, -1), mask))
    return {k: jnp.sum(v) / num for k, v in sums.items()}

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


def encode(model, params, x_NxD, batch_size: int = 1000) -> np.ndarray:
  """The codes ``z_NxZ`` of a trained model (``model.encode``), in batches, as a numpy array.

  Deterministic autoencoders give their code; a VAE (whose ``encode`` returns ``(mean, log_var)``)
  gives the posterior mean ``E_q[z|x]``.
  """
  fn = jax.jit(lambda p, x: model.apply(p, x, method=type(model).encode))
  parts = []
  for start in range(0, len(x_NxD), batch_size):
    z = fn(params, jnp.asarray(x_NxD[start:start + batch_size]))
    parts.append(np.asarray(z[0] if isinstance(z, tuple) else z))
  return np.concatenate(parts)


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
    num = x_MxD.shape[0]
    bs = min(batch_size, num)
    num_batches = -(-num // bs)
    x_padded = jnp.pad(x_MxD, ((0, num_batches * bs - num), (0, 0))).reshape(num_batches, bs, -1)

    def batch_nll(args):
      i, x_BxD = args

      def add_chunk(acc_B, j):
        log_w = log_weights(params, x_BxD, jax.random.fold_in(jax.random.fold_in(key, i), j), chunk)
        in_range = (j * chunk + jnp.arange(chunk) < num_samples)[:, None]
        return logsumexp_accumulate(acc_B, jnp.where(in_range, log_w, -jnp.inf)), None

      acc, _ = jax.lax.scan(add_chunk, jnp.full((bs,), -jnp.inf, jnp.float32), jnp.arange(num_chunks))
      return -(acc - math.log(num_samples))

    return jax.lax.map(batch_nll, (jnp.arange(num_batches), x_padded)).reshape(-1)[:num]

  return nll


def encode_split(encode: Callable, params, x_MxD: jax.Array, batch_size: int = 1000) -> np.ndarray:
  """Codes ``encode(params, x_BxD)`` of a whole split, batch by batch: ``M x Z`` (host array)."""
  encode = jax.jit(encode)
  return np.concatenate([np.asarray(encode(params, x_MxD[i:i + batch_size]))
                         for i in range(0, len(x_MxD), batch_size)])


def final_metrics(run: Any, params, x_MxD: jax.Array, num_samples: int | None = None) -> dict[str, Any]:
  """End-of-training metrics of ``run`` (a ``train.Run``) on the test split ``x_MxD``.

  ``test/active_units`` (:func:`active_units` of the codes) for every family with ``make_encode``; for a
  family with ``make_log_weights`` (the VAE) also ``test/nll``, the importance-sampled ``-log p(x)`` in nats
  per example with ``test/nll_k = num_samples`` (default ``config.eval.nll_samples``) samples, keyed by
  ``EVAL_SEED``.
  """
  family, model, config = run.family, run.model, run.config
  metrics = {}
  if hasattr(family, 'make_encode'):
    codes = encode_split(family.make_encode(model, config), params, x_MxD, config.train.eval_batch_size)
    metrics['test/active_units'] = int(active_units(jnp.asarray(codes)))
  if hasattr(family, 'make_log_weights'):
    k = num_samples or config.eval.nll_samples
    nll = make_importance_nll(family.make_log_weights(model, config), k, config.eval.nll_batch_size,
                              config.eval.nll_chunk_size)
    metrics['test/nll'] = float(jnp.mean(nll(params, x_MxD, jax.random.key(EVAL_SEED))))
    metrics['test/nll_k'] = k
  return metrics


def evaluate_workdir(workdir: str, num_samples: int | None = None) -> dict[str, Any]:
  """Evaluates the latest checkpoint of a finished (or interrupted) run and updates its summary.json.

  Rebuilds the run from ``workdir/config.json``, recomputes the ``test/*`` metrics and adds
  :func:`final_metrics` (``k = num_samples`` or ``eval.nll_samples``). Returns the updated summary.
  Raises FileNotFoundError when the workdir has no config.json or no checkpoint.
  """
  from aelab import config as config_lib, data, train  # noqa: E401  (train imports this module)
  from aelab.workdir import Workdir
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{config_path} not found: --workdir must be the directory of a training run.')
  with open(config_path) as f:
    config = config_lib.from_dict(json.load(f))
  config_lib.validate(config)
  dataset = data.load(config.data)
  run = train.Run(config, dataset)
  out = Workdir(workdir, config, config.train.keep_checkpoints)
  try:
    state, epoch = out.restore(run.init_state())
    if state is None:
      raise FileNotFoundError(f'No checkpoint in {workdir}/checkpoints: train first (python -m aelab.main).')
    x_test = jnp.asarray(dataset.x_test)
    test = {f'test/{k}': float(v) for k, v in run.evaluate(state['params'], x_test, run.hp).items()}
    summary_path = os.path.join(workdir, 'summary.json')
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {'epochs': epoch}
    summary.update({**test, **final_metrics(run, state['params'], x_test, num_samples)})
    out.write_summary(summary)
    return summary
  finally:
    out.close()


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m aelab.evaluate', description=evaluate_workdir.__doc__)
  parser.add_argument('--workdir', required=True, help='directory of a training run (config.json, checkpoints/)')
  parser.add_argument('--k', type=int, default=None, help='importance samples for test/nll (default: eval.nll_samples)')
  args = parser.parse_args(argv)
  if args.k is not None and args.k < 1:
    parser.error(f'--k={args.k}: the importance-sampled NLL needs k >= 1.')
  from aelab import config as config_lib, data  # noqa: E401
  try:
    summary = evaluate_workdir(args.workdir, args.k)
  except (config_lib.ConfigError, data.DataError, data.DatasetUnavailableError, FileNotFoundError) as e:
    raise SystemExit(f'error: {e} (data paths in config.json are relative to where training ran)') from None
  shown = ', '.join(f'{k}={v:.4g}' for k, v in summary.items() if k.startswith('test/'))
  print(f'{args.workdir}/summary.json: {shown}', flush=True)


if __name__ == '__main__':
  main()
