"""Denoising autoencoder: Gaussian noise (noise factor 0.5, clipped to [0, 1]) on the input, clean target.

  python -m aelab.main --config=configs/dae.py --workdir=/tmp/dae          # bundled digits, offline
  python -m aelab.main --config=configs/dae.py:idx=../shared/data/mnist --workdir=/tmp/dae_mnist
  # masking noise (Vincent et al. 2010) instead:
  python -m aelab.main --config=configs/dae.py --config.corruption.name=masking \\
      --config.corruption.rate=0.3 --workdir=/tmp/dae_masking

784-512-128-32 and its mirror, ReLU, cross-entropy reconstruction (Vincent et al. 2008).
test/recon_mse reconstructs corrupted test images (fixed key) against the clean ones;
test/recon_mse_clean_input starts from the clean images.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(512, 128), latent_dim=32, activation='relu', likelihood='bernoulli')
  config.corruption.update(name='gaussian', std=0.5)
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
