"""Sparse autoencoder: sigmoid code with a KL(rho || rho_hat) sparsity penalty (Ng, CS294A notes).

  python -m aelab.main --config=configs/sparse.py --workdir=/tmp/sparse
  python -m aelab.main --config=configs/sparse.py:idx=../shared/data/mnist --workdir=/tmp/sparse_mnist
  # L1 activity penalty instead:
  python -m aelab.main --config=configs/sparse.py --config.penalty.name=l1 --config.penalty.weight=0.01 \\
      --config.model.code_activation=relu --workdir=/tmp/sparse_l1

One sigmoid hidden layer is the code (overcomplete on digits: 64 -> 100); sparsity_target rho = 0.05.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(), latent_dim=100 if small else 196, activation='sigmoid',
                      code_activation='sigmoid', likelihood='bernoulli')
  config.penalty.update(name='kl_sparsity', weight=1.0, target=0.05)
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
