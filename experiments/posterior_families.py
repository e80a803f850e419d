"""The VAE against its posterior variants on real MNIST: IAF and planar flows, categorical (Gumbel-softmax) and
hyperspherical (von Mises-Fisher) latents, a two-level ladder, the VAE/GAN; same 784-400 encoder and decoder, 20
epochs, seed 0.

  python experiments/posterior_families.py [--data=../shared/data/mnist] [--out=runs] [--k=1000]
      [--families=vae,vae_iaf,vae_planar,gumbel_vae,svae,ladder_vae,vae_gan]

Trains ``configs/<family>.py:idx=DATA`` into ``OUT/<family>_mnist`` (a finished run is only re-read) with
``eval.nll_samples = k`` and prints a markdown table of ``test/nll`` (importance-sampled -log p(x)),
``test/neg_elbo``, ``test/kl`` (nats per example), ``test/recon_mse`` (per pixel) and the wall time.
"""
import argparse
import os

import common  # experiments/common.py, beside this file

from aelab.train import engine

COLUMNS = ('test/nll', 'test/neg_elbo', 'test/kl', 'test/recon_mse', 'wall_time_s')


def family_config(name: str, data: str, k: int):
  config = common.load_config(name, f'idx={data}')
  config.eval.nll_samples = k
  config.train.figures_every = 0
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default='../shared/data/mnist')
  parser.add_argument('--out', default='runs')
  parser.add_argument('--k', type=int, default=1000)
  parser.add_argument('--families', default='vae,vae_iaf,vae_planar,gumbel_vae,svae,ladder_vae,vae_gan')
  args = parser.parse_args()
  print(f'| family | {" | ".join(COLUMNS)} |\n|{" --- |" * (len(COLUMNS) + 1)}', flush=True)
  for name in args.families.split(','):
    summary = engine.train_and_evaluate(family_config(name, args.data, args.k), os.path.join(args.out, f'{name}_mnist'))
    print(f'| {name} | ' + ' | '.join(f'{summary.get(c, float("nan")):.4g}' for c in COLUMNS) + ' |', flush=True)


if __name__ == '__main__':
  main()
