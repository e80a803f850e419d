"""Categorical VAE with the Gumbel-softmax relaxation (Jang et al. 2017): 30 categorical variables of 10
classes, 784-400 like configs/vae.py's encoder, temperature annealed from 1 to 0.5.

  python -m aelab.main --config=configs/gumbel_vae.py --workdir=/tmp/gumbel_vae            # bundled digits, offline
  python -m aelab.main --config=configs/gumbel_vae.py:idx=../shared/data/mnist --workdir=/tmp/gumbel_vae_mnist
  python -m aelab.main --config=configs/gumbel_vae.py --config.gumbel_vae.straight_through=True --workdir=/tmp/st

train/temperature is the epoch's mean temperature; test/neg_elbo and test/nll are those of the discrete
model (exact one-hot samples), nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('gumbel_vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=30, activation='relu', likelihood='bernoulli')
  config.gumbel_vae.update(num_categories=10, temperature=1.0, min_temperature=0.5, anneal_rate=3e-5)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
