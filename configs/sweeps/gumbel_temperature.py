"""Gumbel-softmax temperature schedule of the categorical VAE: initial temperature x anneal rate, 9 runs, one
program (the temperature and its schedule are traced).

  python -m aelab.main --config=configs/gumbel_vae.py:idx=../shared/data/mnist \\
      --sweep=configs/sweeps/gumbel_temperature.py --workdir=runs/gumbel_temperature
"""
from aelab.train import sweep


def get_sweep(arg=None):
  return sweep.product(sweep.axis('gumbel_vae.temperature', (0.5, 1.0, 2.0)),
                       sweep.axis('gumbel_vae.anneal_rate', (0.0, 3e-5, 1e-4)))
