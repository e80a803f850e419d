"""Variational autoencoder (Kingma & Welling 2014): 784-400-20, ReLU, Bernoulli likelihood.

  python -m aelab.main --config=configs/vae.py --workdir=/tmp/vae          # bundled digits, offline
  python -m aelab.main --config=configs/vae.py:idx=../shared/data/mnist --workdir=/tmp/vae_mnist
  python -m aelab.main --config=configs/vae.py:mnist --config.vae.kl_weight=4 --workdir=/tmp/beta4

Dynamic binarization of the training images (a fresh Bernoulli sample each time an image is used);
the test images are binarized once with a fixed key. test/neg_elbo is in nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vae.kl_weight = 1.0
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
