"""First-layer filters of an autoencoder, a sparse autoencoder and a denoising autoencoder, as tiles.

  python experiments/filters.py                                        # bundled digits (8x8 filters)
  python experiments/filters.py --data=idx=../shared/data/mnist --out=runs/filters_mnist

All three are ``configs/sparse.py``'s one-layer model (sigmoid code, 196 units on 28x28 images, 100 on
digits, cross-entropy reconstruction), trained with ``engine.train_and_evaluate`` in
``<out>/runs/<name>``: ``ae`` without the sparsity penalty, ``sparse`` with KL(rho || rho_hat),
rho = 0.05 (Ng 2011), ``dae`` without the penalty and with masking noise (``--rate`` of the inputs set
to 0). Vincent et al. (2010), Sec. 5 and Fig. 6-7: the plain autoencoder's filters look like noise or
blobs, the denoising autoencoder's like localized strokes and edge detectors. Each filter (a column of
the encoder kernel) is scaled to [0, 1] on its own; ``filter_roughness`` (see :func:`roughness`)
measures how noise-like they are. Writes ``filters.png`` and ``filters.json`` to
``--out``.
"""
import json
import os
import time

import common
import numpy as np

from aelab.eval import plots


def roughness(kernel_DxH: np.ndarray, shape) -> float:
  """Mean over filters of the squared difference of neighbouring pixels (both directions) divided by
  the filter's variance: 4 for white noise, near 0 for smooth strokes and blobs."""
  f = np.asarray(kernel_DxH).T.reshape(-1, shape[0], shape[1])
  f = f - f.mean((1, 2), keepdims=True)
  grad = np.mean(np.diff(f, axis=1) ** 2, (1, 2)) + np.mean(np.diff(f, axis=2) ** 2, (1, 2))
  return float(np.mean(grad / np.maximum(np.mean(f ** 2, (1, 2)), 1e-12)))


def filter_config(name: str, data_arg: str, rate: float, epochs: int):
  """``configs/sparse.py`` as the plain (``ae``), sparse (``sparse``) or denoising (``dae``) model."""
  config = common.load_config('sparse', data_arg)
  if name != 'sparse':
    config.penalty.update(name='none', weight=0.0)
  if name == 'dae':
    config.corruption.update(name='masking', rate=rate)
  if epochs:
    config.train.num_epochs = epochs
  return config


def main() -> None:
  p = common.parser(__doc__, 'runs/filters')
  p.add_argument('--rate', type=float, default=0.5, help='masking-noise rate of the DAE')
  p.add_argument('--epochs', type=int, default=0, help='training epochs (0: the config default)')
  p.add_argument('--num', type=int, default=100, help='filters shown per model')
  args = p.parse_args()
  t0, kernels, results = time.time(), {}, {}
  titles = {'ae': 'AE', 'sparse': 'sparse AE (KL, rho=0.05)', 'dae': f'DAE (masking {args.rate:g})'}
  for name, title in titles.items():
    print(f'[{time.time() - t0:.0f} s] training or restoring {name}', flush=True)
    trained, summary = common.train_or_restore(filter_config(name, args.data, args.rate, args.epochs),
                                               os.path.join(args.out, 'runs', name))
    kernels[title] = np.asarray(trained.params['params']['encoder']['mlp']['dense_0']['kernel'])
    results[name] = {**{k: summary[k] for k in ('test/recon_mse', 'test/code_mean_abs') if k in summary},
                     'filter_roughness': roughness(kernels[title], trained.data_shape)}
    print(f'{title}: filter roughness {results[name]["filter_roughness"]:.3f}', flush=True)
  path = os.path.join(args.out, 'filters.png')
  plots.filter_panels(kernels, trained.data_shape, path, args.num)
  with open(os.path.join(args.out, 'filters.json'), 'w') as f:
    json.dump(results, f, indent=2)
  print(f'wrote {path}; wall time {time.time() - t0:.0f} s', flush=True)
  if args.json:
    print(json.dumps(results))


if __name__ == '__main__':
  main()
