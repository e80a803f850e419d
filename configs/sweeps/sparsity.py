"""Sparsity ablation of the sparse autoencoder (``configs/sparse.py``), x 3 seeds:

- L1 activity penalty on a ReLU code, ``penalty.weight`` in 0 ... 1 (one group);
- KL(rho || rho_hat) penalty on the sigmoid code at weight 1, ``penalty.target`` rho in 0.01 ... 0.4
  (another group: the code activation differs, so it is another program).

  python -m aelab.main --config=configs/sparse.py:idx=../shared/data/mnist --sweep=configs/sweeps/sparsity.py \\
      --workdir=runs/sparsity_sweep

``arg``: ``seeds=N`` (default 3). Report: ``experiments/sparsity_ablation.py``.
"""
from aelab.train import sweep

L1_WEIGHTS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)
KL_TARGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


def get_sweep(arg=None):
  seeds = sweep.axis('seed', range(int(arg.partition('=')[2]) if arg else 3))
  l1 = sweep.product([{'penalty.name': 'l1', 'model.code_activation': 'relu'}],
                     sweep.axis('penalty.weight', L1_WEIGHTS), seeds)
  kl = sweep.product([{'penalty.name': 'kl_sparsity', 'penalty.weight': 1.0}],
                     sweep.axis('penalty.target', KL_TARGETS), seeds)
  return l1 + kl
