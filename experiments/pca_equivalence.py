"""A linear autoencoder learns the principal subspace (Baldi & Hornik 1989), a sigmoid one need not.

  python experiments/pca_equivalence.py                                   # bundled digits, k = 2, 8, 32
  python experiments/pca_equivalence.py --data=idx=../shared/data/mnist --ks=2,8,32 --json

Baldi & Hornik (1989), Neural networks and principal component analysis: learning from examples
without local minima, Neural Networks 2:53-58: with squared error on centred data, every minimum of a
linear autoencoder with k code units spans the top-k principal subspace (the weights are unique only
up to an invertible k x k map, so the subspace, not the components, is compared). For each k this trains
``configs/ae.py`` with no hidden layer, identity code and output, MSE, on train images centred by their
mean; it reports the largest principal angle between the decoder's column space and scikit-learn PCA's
top-k subspace, and the test reconstruction MSE per pixel of both. The same with a sigmoid code (a
non-linear autoencoder of the same size, Bourlard & Kamp 1988) shows where the non-linear one differs.
Writes ``pca_equivalence.{json,md}`` and ``pca_equivalence.png`` to ``--out``; with ``--json`` the last
printed line is the list of ``{k, max_angle_deg, ae_mse, pca_mse, ...}``.
"""
import dataclasses
import os
import re
import time

import common
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from aelab import data

from aelab.eval import metrics

from aelab.train import pretrain


def autoencoder_config(data_arg: str, k: int, code_activation: str, epochs: int, seed: int = 0,
                       learning_rate: float = 3e-3):
  """``configs/ae.py`` as a one-layer autoencoder with ``k`` code units: identity output, MSE, Adam
  (3e-3, cosine decay, batch 32): enough steps to reach the optimum closely."""
  config = common.load_config('ae', data_arg)
  config.model.update(hidden=(), latent_dim=k, activation='identity', code_activation=code_activation,
                      output_activation='identity', likelihood='mse')
  config.optimizer.update(name='adam', learning_rate=learning_rate, schedule='cosine')
  config.train.update(num_epochs=epochs, batch_size=32, figures_every=0)
  config.seed = seed
  return config


def centred(dataset: data.Dataset) -> data.Dataset:
  """The dataset minus the mean of its train examples (PCA's and the theorem's assumption)."""
  mean = dataset.x_train.mean(0, keepdims=True)
  return dataclasses.replace(dataset, train=dataset.x_train - mean, test=dataset.x_test - mean, kind='tabular')


def compare_k(dataset: data.Dataset, data_arg: str, k: int, code_activation: str, epochs: int,
              seed: int = 0, learning_rate: float = 3e-3) -> dict:
  """Trains the autoencoder on centred ``dataset`` and compares it with PCA at ``k``.

  Returns ``{k, max_angle_deg, ae_mse, pca_mse}`` (test MSE per pixel) and the train MSEs.
  Raises ValueError when ``k`` exceeds the data dimension or the number of train examples.
  """
  n, d = dataset.x_train.shape
  if not 1 <= k <= min(n, d):
    raise ValueError(f'k={k} code units must lie in [1, {min(n, d)}] (data dimension {d}, {n} examples).')
  every = max(1, epochs // 4)

  def log(line: str) -> None:  # every ``every`` epochs and the last, as before
    epoch = re.search(r'epoch (\d+)/(\d+)', line)
    if epoch is None or int(epoch[1]) % every == 0 or epoch[1] == epoch[2]:
      print(f'k={k} {code_activation} code:{line}', flush=True)

  run, params, history = pretrain.fit(
      autoencoder_config(data_arg, k, code_activation, epochs, seed, learning_rate), dataset, log=log)
  pca = PCA(n_components=k, svd_solver='full').fit(dataset.x_train)
  decoder_kernel_KxD = params['params']['decoder']['mlp']['dense_0']['kernel']
  pca_mse = lambda x: float(np.mean(np.square(pca.inverse_transform(pca.transform(x)) - x)))
  evaluate = metrics.make_evaluate(run.family.eval, run.config.train.eval_batch_size)
  ae_train_mse = float(evaluate(params, dataset.x_train, run.hp)['recon_mse'])
  return {'k': k, 'max_angle_deg': float(metrics.principal_angles_deg(decoder_kernel_KxD.T, pca.components_.T)[0]),
          'ae_mse': history[-1]['test/recon_mse'], 'pca_mse': pca_mse(dataset.x_test),
          'ae_train_mse': ae_train_mse, 'pca_train_mse': pca_mse(dataset.x_train)}


def _figure(rows: list[dict], path: str) -> None:
  fig, (ax_angle, ax_mse) = plt.subplots(1, 2, figsize=(9, 3.4))
  ks = [r['k'] for r in rows]
  ax_angle.plot(ks, [r['max_angle_deg'] for r in rows], 'o-', label='linear AE')
  ax_angle.plot(ks, [r['sigmoid_max_angle_deg'] for r in rows], 's--', label='sigmoid AE')
  ax_angle.set(xscale='log', xlabel='k (code units)', ylabel='largest principal angle (degrees)')
  for key, label, style in (('pca_mse', 'PCA', 'k:'), ('ae_mse', 'linear AE', 'o-'),
                            ('sigmoid_ae_mse', 'sigmoid AE', 's--')):
    ax_mse.plot(ks, [r[key] for r in rows], style, label=label)
  ax_mse.set(xscale='log', yscale='log', xlabel='k (code units)', ylabel='test MSE per pixel')
  for ax in (ax_angle, ax_mse):
    ax.set_xticks(ks, [str(k) for k in ks], minor=False)
    ax.set_xticks([], minor=True)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main() -> None:
  p = common.parser(__doc__, 'runs/pca_equivalence')
  p.add_argument('--ks', default='2,8,32', help='comma-separated code sizes k')
  p.add_argument('--epochs', type=int, default=100, help='training epochs of each autoencoder')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args()
  dataset = centred(data.load(common.load_config('ae', args.data).data))
  rows, t0 = [], time.time()
  ks = [int(s) for s in args.ks.split(',')]
  if not all(1 <= k <= min(dataset.x_train.shape) for k in ks):
    raise SystemExit(f'error: --ks={args.ks}: each k must lie in [1, {min(dataset.x_train.shape)}] '
                     f'(the data dimension {dataset.x_train.shape[1]} and the number of examples).')
  for k in ks:
    row = compare_k(dataset, args.data, k, 'identity', args.epochs, args.seed)
    sigmoid = compare_k(dataset, args.data, k, 'sigmoid', args.epochs, args.seed)
    row.update(sigmoid_max_angle_deg=sigmoid['max_angle_deg'], sigmoid_ae_mse=sigmoid['ae_mse'],
               ae_over_pca_mse=row['ae_mse'] / row['pca_mse'])
    rows.append(row)
    print(f'k={k}: angle {row["max_angle_deg"]:.2f} deg, AE/PCA MSE {row["ae_over_pca_mse"]:.4f} '
          f'({time.time() - t0:.0f} s)', flush=True)
  columns = ['k', 'max_angle_deg', 'ae_mse', 'pca_mse', 'ae_over_pca_mse', 'sigmoid_max_angle_deg', 'sigmoid_ae_mse']
  table = common.markdown_table(rows, columns, {c: '.5f' for c in columns[1:]} | {'max_angle_deg': '.2f',
                                                                                   'sigmoid_max_angle_deg': '.2f'})
  os.makedirs(args.out, exist_ok=True)
  _figure(rows, os.path.join(args.out, 'pca_equivalence.png'))
  common.write_results(args.out, 'pca_equivalence', rows, table, t0, args.json)


if __name__ == '__main__':
  main()
