"""Dimensionality reduction and visualization: 2-D autoencoder codes next to PCA and t-SNE.

  python experiments/embed_2d.py                                      # digits + S-curve + example CSV
  python experiments/embed_2d.py --data=idx=../shared/data/mnist --out=runs/embed_2d_mnist
  python experiments/embed_2d.py --csv=my_table.csv --out=runs/embed_my_table   # your own table

Three figures in ``--out``:

- ``images_2d.png``: ``--points`` images (the test split first) embedded by an autoencoder with a 2-unit
  code (``configs/ae.py`` with ``model.hidden=(512, 128)``, trained with ``train_and_evaluate``), by
  PCA (scikit-learn) and by t-SNE (scikit-learn, van der Maaten & Hinton 2008), coloured by label.
- ``s_curve.png``: scikit-learn's 3-D S-curve before encoding and its 2-D autoencoder code and PCA
  projection, coloured by the position along the curve: the non-linear code unrolls the sheet that
  PCA flattens onto itself.
- ``csv_2d.png``: the same three embeddings for a numeric CSV (``aelab.data``'s csv source: optional
  header, optional ``label`` column; features standardized). Without ``--csv`` the bundled example
  ``experiments/data/blobs.csv`` (``--write-example-csv`` regenerates it) is used.
"""
import os
import time

import common
import jax
import numpy as np
from sklearn.datasets import make_blobs, make_s_curve
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from aelab import data

from aelab.eval import plots

from aelab.train import pretrain

EXAMPLE_CSV = common.ROOT / 'experiments' / 'data' / 'blobs.csv'


def write_example_csv(path: str, seed: int = 0) -> None:
  """A small labelled table: 400 rows of 10 features from 4 Gaussian blobs (``make_blobs``), with a
  header row and a ``label`` column, 3 decimals."""
  x, y = make_blobs(n_samples=400, n_features=10, centers=4, cluster_std=2.0, random_state=seed)
  header = ','.join([f'f{i}' for i in range(x.shape[1])] + ['label'])
  np.savetxt(path, np.column_stack([x, y]), delimiter=',', header=header, comments='', fmt='%.3f')


def two_d_config(data_arg: str, hidden: tuple[int, ...], epochs: int | None):
  """``configs/ae.py`` with a 2-unit code (identity) and the given hidden widths."""
  config = common.load_config('ae', data_arg)
  config.model.update(hidden=hidden, latent_dim=2)
  if epochs:
    config.train.num_epochs = epochs
  return config


def embeddings(x_NxD: np.ndarray, ae_code_Nx2: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
  """The autoencoder's code next to PCA and t-SNE (perplexity 30, PCA init) of the same points."""
  t0 = time.time()
  tsne = TSNE(2, init='pca', perplexity=min(30.0, (len(x_NxD) - 1) / 3), random_state=seed).fit_transform(x_NxD)
  print(f't-SNE of {x_NxD.shape} in {time.time() - t0:.0f} s', flush=True)
  return {'autoencoder (2-unit code)': ae_code_Nx2, 'PCA': PCA(2).fit_transform(x_NxD), 't-SNE': tsne}


def labelled_figure(data_arg: str, hidden: tuple[int, ...], epochs: int | None, points: int, out: str,
                    name: str, title: str) -> dict:
  """Trains the 2-D autoencoder on ``data_arg`` and saves the three embeddings of (at most ``points``) test
  examples, then train examples."""
  config = two_d_config(data_arg, hidden, epochs)
  trained, summary = common.train_or_restore(config, os.path.join(out, 'runs', name))
  ds = data.load(trained.config.data)
  # test examples first, then train ones when the test split has fewer than ``points``
  x = np.concatenate([ds.x_test, ds.x_train])[:points]
  colour = np.zeros(len(x)) if ds.y_test is None else np.concatenate([ds.y_test, ds.y_train])[:points]
  panels = embeddings(x, trained.encode(x))
  plots.embedding_panels(panels, colour, os.path.join(out, f'{name}.png'), title, discrete=ds.y_test is not None)
  return {'figure': f'{name}.png', 'points': len(x), 'test/recon_mse': summary['test/recon_mse'],
          'pca_recon_mse': _pca_mse(ds.x_train, ds.x_test)}


def s_curve_figure(out: str, epochs: int, seed: int = 0) -> dict:
  """The 3-D S-curve (2,000 points, noise 0.05) and its 2-D autoencoder code and PCA projection."""
  x, t = make_s_curve(2000, noise=0.05, random_state=seed)
  x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
  config = common.load_config('ae', 'csv=s_curve.csv')  # the tabular variant: MSE, identity output
  config.model.update(hidden=(64, 64), latent_dim=2, activation='tanh')
  config.train.update(num_epochs=epochs, batch_size=32, figures_every=0)
  config.seed = seed
  run, params, history = pretrain.fit(config, pretrain.arrays_dataset(x[:1600], x[1600:], 's_curve'))
  code = np.asarray(jax.jit(run.family.encode)(params, x))
  panels = {'S-curve (3-D data)': x, 'autoencoder (2-unit code)': code, 'PCA': PCA(2).fit_transform(x)}
  plots.embedding_panels(panels, t, os.path.join(out, 's_curve.png'), 'S-curve: 3-D to 2-D', discrete=False)
  return {'figure': 's_curve.png', 'test/recon_mse': history[-1]['test/recon_mse'],
          'pca_recon_mse': _pca_mse(x[:1600], x[1600:])}


def _pca_mse(x_train: np.ndarray, x_test: np.ndarray) -> float:
  """Test MSE per feature of a 2-component PCA fitted on ``x_train``: the linear baseline."""
  pca = PCA(2).fit(x_train)
  return float(np.mean(np.square(pca.inverse_transform(pca.transform(x_test)) - x_test)))


def main() -> None:
  p = common.parser(__doc__, 'runs/embed_2d')
  p.add_argument('--csv', default=str(EXAMPLE_CSV), help='a numeric CSV to embed (default: the bundled example)')
  p.add_argument('--write-example-csv', action='store_true', help=f'regenerate {EXAMPLE_CSV} and exit')
  p.add_argument('--points', type=int, default=2000, help='test points to embed (t-SNE cost grows with it)')
  p.add_argument('--epochs', type=int, default=0, help='epochs of the image autoencoder (0: config default)')
  p.add_argument('--s-curve-epochs', type=int, default=100)
  args = p.parse_args()
  if args.write_example_csv:
    write_example_csv(str(EXAMPLE_CSV))
    raise SystemExit(f'wrote {EXAMPLE_CSV}')
  os.makedirs(args.out, exist_ok=True)
  t0 = time.time()
  results = {'images': labelled_figure(args.data, (512, 128), args.epochs, args.points, args.out, 'images_2d',
                                       f'{args.data}: test images in 2-D'),
             's_curve': s_curve_figure(args.out, args.s_curve_epochs),
             'csv': labelled_figure(f'csv={args.csv}', (64,), None, args.points, args.out, 'csv_2d',
                                    f'{os.path.basename(args.csv)} in 2-D')}
  table = common.markdown_table([{'example': k, **v} for k, v in results.items()],
                                ['example', 'figure', 'test/recon_mse', 'pca_recon_mse'], {'test/recon_mse': '.4f',
                                                                                           'pca_recon_mse': '.4f'})
  common.write_results(args.out, 'embed_2d', results, table, t0, args.json)


if __name__ == '__main__':
  main()
