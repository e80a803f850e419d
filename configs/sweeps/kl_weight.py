"""KL weight (beta) ablation of the VAE: 8 values of ``vae.kl_weight`` x 3 seeds = 24 runs, one program.

  python -m aelab.main --config=configs/vae.py:idx=../shared/data/mnist --sweep=configs/sweeps/kl_weight.py \\
      --workdir=runs/kl_sweep
  python -m aelab.main --config=configs/vae.py --sweep=configs/sweeps/kl_weight.py:seeds=1 --workdir=/tmp/kl

``arg``: ``seeds=N`` (default 3). Report: ``experiments/kl_ablation.py``.
"""
from aelab.train import sweep

KL_WEIGHTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def get_sweep(arg=None):
  seeds = int(arg.partition('=')[2]) if arg else 3
  return sweep.product(sweep.axis('vae.kl_weight', KL_WEIGHTS), sweep.axis('seed', range(seeds)))
