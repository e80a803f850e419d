"""Hyperspherical VAE (Davidson et al. 2018): von Mises-Fisher posterior on the sphere S^9 in R^10, uniform prior,
the 784-400 MLP of configs/vae.py.

  python -m aelab.main --config=configs/svae.py --workdir=/tmp/svae                  # bundled digits, offline
  python -m aelab.main --config=configs/svae.py:idx=../shared/data/mnist --workdir=/tmp/svae_mnist
  python -m aelab.main --config=configs/svae.py --config.model.latent_dim=5 --workdir=/tmp/svae5

train/kappa is the posterior's mean concentration; test/kl the closed-form KL to the uniform prior, nats.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('svae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=10, activation='relu', likelihood='bernoulli')
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
