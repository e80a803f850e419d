"""VAE/GAN (Larsen et al. 2016): the VAE of configs/vae.py (784-400-20) whose reconstruction error is measured
in the last hidden layer of a 784-512-256-1 discriminator; Adam 1e-4 for the discriminator.

  python -m aelab.main --config=configs/vae_gan.py --workdir=/tmp/vae_gan                # bundled digits, offline
  python -m aelab.main --config=configs/vae_gan.py:idx=../shared/data/mnist --workdir=/tmp/vae_gan_mnist
  python -m aelab.main --config=configs/vae_gan.py --config.vae_gan.recon_weight=0.1 --workdir=/tmp/vae_gan_g01

train/recon_features is the feature-space reconstruction loss, train/disc_loss the discriminator's (3 log 2 at
chance); test/recon_mse is per pixel. Grey-level images (no binarization): the discriminator sees the decoder's
means next to real images.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae_gan'), arg)
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vae_gan.update(disc_hidden=(512, 256), disc_learning_rate=1e-4)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
