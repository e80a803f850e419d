"""Wasserstein autoencoder, WAE-MMD (Tolstikhin et al. 2018): 784-400-20, ReLU, Bernoulli cost, IMQ kernel.

  python -m aelab.main --config=configs/wae.py --workdir=/tmp/wae                  # bundled digits, offline
  python -m aelab.main --config=configs/wae.py:idx=../shared/data/mnist --workdir=/tmp/wae_mnist
  python -m aelab.main --config=configs/wae.py --config.wae.kernel=rbf --config.wae.mmd_weight=100 --workdir=/tmp/rbf

The loss is the reconstruction cost plus wae.mmd_weight (lambda) times the unbiased MMD^2 between the codes and
N(0, I); train/mmd logs it. Samples decode draws of N(0, I). The widths match configs/vae.py.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('wae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.wae.update(mmd_weight=10.0, kernel='imq', kernel_bandwidth=1.0)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
