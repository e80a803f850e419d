"""beta-VAE sweep on real MNIST: test KL and reconstruction against kl_weight (beta).

  python experiments/beta_sweep.py [--data=../shared/data/mnist] [--out=runs] [--betas=0.5,1,2,4,8]

Trains ``configs/vae.py:idx=DATA`` (784-400-20, 20 epochs, seed 0) once per beta into ``OUT/beta_<b>``
(a finished run is only re-read), prints a markdown table of ``test/kl``, ``test/recon_bce`` and
``test/neg_elbo`` (nats per example) and writes ``experiments/figures/beta_sweep_mnist.png``.
"""
import argparse
import os
import pathlib

import matplotlib

matplotlib.use('Agg')
import common  # experiments/common.py, beside this file
import matplotlib.pyplot as plt

from aelab.train import engine

ROOT = pathlib.Path(__file__).resolve().parents[1]


def vae_config(data: str, beta: float):
  config = common.load_config('vae', f'idx={data}')
  config.vae.kl_weight = beta
  config.train.figures_every = 5
  config.eval.final_metrics = False
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default='../shared/data/mnist')
  parser.add_argument('--out', default='runs')
  parser.add_argument('--betas', default='0.5,1,2,4,8')
  args = parser.parse_args()
  betas = [float(b) for b in args.betas.split(',')]
  rows = [engine.train_and_evaluate(vae_config(args.data, b), os.path.join(args.out, f'beta_{b:g}')) for b in betas]
  print('| beta | test/kl | test/recon_bce | test/neg_elbo | test/recon_mse |\n| --- | --- | --- | --- | --- |')
  for b, s in zip(betas, rows):
    print(f'| {b:g} | {s["test/kl"]:.2f} | {s["test/recon_bce"]:.2f} | {s["test/neg_elbo"]:.2f} '
          f'| {s["test/recon_mse"]:.4f} |')
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot(betas, [s['test/kl'] for s in rows], marker='o', label='KL')
  ax.plot(betas, [s['test/recon_bce'] for s in rows], marker='o', label='reconstruction')
  ax.set_xscale('log', base=2)
  ax.set_xlabel('beta (kl_weight)')
  ax.set_ylabel('nats per example (test)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(ROOT / 'experiments' / 'figures' / 'beta_sweep_mnist.png', dpi=80)


if __name__ == '__main__':
  main()
