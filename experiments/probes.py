"""Codes as features: a linear probe and k-nearest neighbours on raw pixels, PCA and autoencoder codes.

  python experiments/probes.py                                       # bundled digits, codes of size 32
  python experiments/probes.py --data=idx=../shared/data/mnist --dim=32 --out=runs/probes_mnist

Trains ``configs/ae.py``, ``sparse.py``, ``dae.py`` and ``vae.py`` with ``model.latent_dim = --dim``
(each with ``engine.train_and_evaluate`` in ``<out>/runs/<name>``; a rerun reuses the checkpoints), fits
scikit-learn PCA with ``--dim`` components, and compares the frozen features of the train and test
images: ``aelab.eval.metrics.linear_probe`` (standardized features, logistic regression) and
``knn_accuracy`` (``--k`` neighbours, Euclidean). The VAE's code is its posterior mean. All encoders see
the same grey-level images. Writes ``probes.{json,md}`` to ``--out``.
"""
import os
import time

import common
import numpy as np
from sklearn.decomposition import PCA

from aelab import data

from aelab.eval import metrics

MODELS = ('ae', 'sparse', 'dae', 'vae')
NAMES = {'ae': 'AE', 'sparse': 'sparse AE (KL, rho=0.05)', 'dae': 'DAE (Gaussian 0.5)', 'vae': 'VAE (posterior mean)'}


def model_codes(name: str, data_arg: str, dim: int, out: str, epochs: int | None,
                x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
  """Trains (or restores) ``configs/<name>.py`` with ``dim`` code units; returns train and test codes
  of ``x_train`` / ``x_test`` and the run's summary."""
  config = common.load_config(name, data_arg)
  config.model.latent_dim = dim
  if epochs:
    config.train.num_epochs = epochs
  trained, summary = common.train_or_restore(config, os.path.join(out, 'runs', name))
  return trained.encode(x_train), trained.encode(x_test), summary


def probe_row(name: str, z_train, z_test, dataset: data.Dataset, k: int) -> dict:
  """One table row: the features' size, linear-probe and kNN test accuracies."""
  row = {'features': name, 'dim': z_train.shape[1],
         'linear_probe_acc': metrics.linear_probe(z_train, dataset.y_train, z_test, dataset.y_test),
         'knn_acc': metrics.knn_accuracy(z_train, dataset.y_train, z_test, dataset.y_test, k)}
  print(f'{name}: linear probe {row["linear_probe_acc"]:.4f}, {k}-NN {row["knn_acc"]:.4f}', flush=True)
  return row


def main() -> None:
  p = common.parser(__doc__, 'runs/probes')
  p.add_argument('--dim', type=int, default=32, help='size of every code (and PCA components)')
  p.add_argument('--k', type=int, default=5, help='neighbours of the kNN classifier')
  p.add_argument('--epochs', type=int, default=0, help='training epochs of each model (0: the config default)')
  p.add_argument('--models', default=','.join(MODELS), help='comma-separated configs to train and probe')
  args = p.parse_args()
  t0 = time.time()
  dataset = data.load(common.load_config('ae', args.data).data)
  if dataset.y_train is None:
    raise SystemExit(f'error: {args.data} has no labels; the probes need them.')
  if not 1 <= args.dim <= dataset.x_train.shape[1]:
    raise SystemExit(f'error: --dim={args.dim} must lie in [1, {dataset.x_train.shape[1]}] (the data dimension).')
  x_train, x_test = dataset.x_train, dataset.x_test
  rows = [probe_row('raw pixels', x_train, x_test, dataset, args.k)]
  pca = PCA(args.dim).fit(x_train)
  rows.append(probe_row('PCA', pca.transform(x_train), pca.transform(x_test), dataset, args.k))
  for name in args.models.split(','):
    print(f'[{time.time() - t0:.0f} s] training or restoring {name}', flush=True)
    z_train, z_test, summary = model_codes(name, args.data, args.dim, args.out, args.epochs, x_train, x_test)
    rows.append({**probe_row(NAMES.get(name, name), z_train, z_test, dataset, args.k),
                 'test_recon_mse': summary.get('test/recon_mse')})
  columns = ['features', 'dim', 'linear_probe_acc', 'knn_acc', 'test_recon_mse']
  table = common.markdown_table(rows, columns, {'linear_probe_acc': '.4f', 'knn_acc': '.4f', 'test_recon_mse': '.4f'})
  common.write_results(args.out, 'probes', rows, table, t0, args.json)


if __name__ == '__main__':
  main()
