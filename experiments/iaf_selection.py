"""Chooses the IAF posterior's size for the generative benchmark on a validation split, not the test split.

  python experiments/iaf_selection.py                 # about 5 minutes on 2 CPU cores

The benchmark (``experiments/generative_benchmark.py``) trains on the 8,000-image training split of the real
MNIST test set and reports ``test/nll`` on the other 2,000. This script holds 2,000 of the 8,000 training
images out (``data.test_fraction=0.25``, ``data.split_seed=0``), trains the benchmark's VAE and each IAF
candidate below on the other 6,000 as a population of ``--seeds`` seeds (the benchmark's nets, epochs, batch
and ``nll_k``), and prints each candidate's validation NLL (nats per example, mean and standard deviation
over seeds) beside the VAE's. The candidates were fixed before any of them was run: the default (2 steps,
MADE width 64), the smallest MADE of Kingma et al. 2016, Table 1 (width 320), the same with the encoder
context ``h`` (16 units, the latent size) and with 4 steps. The benchmark then uses the candidate with the
lowest validation NLL (``SETTINGS['vae_iaf']`` there); the test split is not looked at here.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

from aelab import config as config_lib, data, models  # noqa: E402
from aelab.train import sweep  # noqa: E402
import generative_benchmark as gb  # noqa: E402

CANDIDATES = {
    'iaf 2 x MADE 64 (default)': {},
    'iaf 2 x MADE 320': {'made_hidden': (320,)},
    'iaf 2 x MADE 320, context 16': {'made_hidden': (320,), 'context_dim': 16},
    'iaf 4 x MADE 320': {'made_hidden': (320,), 'num_flows': 4},
}


def training_split_npz(args: argparse.Namespace, directory: str) -> str:
  """The benchmark's 8,000 training images (and labels) written as an npz; returns its path."""
  dataset = data.load(gb.family_config('vae', args).data)
  path = os.path.join(directory, 'mnist_train_split.npz')
  x = np.asarray(dataset.x_train).reshape(-1, 28, 28)
  np.savez(path, x=x.astype(np.float32), y=np.asarray(dataset.y_train))
  return path


def validation_nll(name: str, settings: dict, npz: str, args: argparse.Namespace, runs: str) -> np.ndarray:
  """The ``--seeds`` validation NLLs of the family with ``settings`` in its section."""
  config = gb.family_config(name, args)
  config = config_lib.set_data(config, f'npz={npz}')
  config.data.update(test_fraction=0.25, split_seed=0, binarize='dynamic')
  if name == 'vae_iaf':  # the candidate on the family's defaults, not on the benchmark's SETTINGS['vae_iaf']
    config.vae_iaf.update({key: default for key, (default, _) in models.module(name).CONFIG.items()})
  for key, value in settings.items():
    config[name][key] = value
  config = config_lib.adapt_to_data(config)
  seeds = sweep.axis('seed', list(range(args.seeds)))
  summaries = sweep.run_sweep(config, seeds, runs, log=lambda line: None)
  return np.array([summaries[sweep.run_name(s)]['test/nll'] for s in seeds])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'mnist'))
  parser.add_argument('--epochs', type=int, default=8)
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--nll_k', type=int, default=100)
  parser.add_argument('--runs', default=None, help='folder for the runs (default: a temporary one)')
  args = parser.parse_args()
  runs = args.runs or tempfile.mkdtemp(prefix='iaf_selection_')
  os.makedirs(runs, exist_ok=True)
  npz = training_split_npz(args, runs)
  vae = validation_nll('vae', {}, npz, args, os.path.join(runs, 'vae'))
  print(f'vae: validation NLL {vae.mean():.2f} +- {vae.std():.2f} ({", ".join(f"{v:.2f}" for v in vae)})')
  best = None
  for i, (label, settings) in enumerate(CANDIDATES.items()):
    nll = validation_nll('vae_iaf', settings, npz, args, os.path.join(runs, f'iaf_{i}'))
    lower = int(np.sum(nll < vae))
    print(f'{label}: validation NLL {nll.mean():.2f} +- {nll.std():.2f} ({", ".join(f"{v:.2f}" for v in nll)}); '
          f'below the VAE for {lower} of {len(nll)} seeds', flush=True)
    if best is None or nll.mean() < best[1]:
      best = (label, nll.mean())
  print(f'lowest validation NLL: {best[0]} ({best[1]:.2f}); the VAE {vae.mean():.2f}')


if __name__ == '__main__':
  main()
