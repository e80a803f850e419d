"""PIWAE(M, K) (Rainforth et al. 2018): the VAE of configs/vae.py, decoder on IWAE(M K), encoder on MIWAE(M, K).

  python -m aelab.main --config=configs/piwae.py --workdir=/tmp/piwae              # bundled digits, offline
  python -m aelab.main --config=configs/piwae.py:idx=../shared/data/mnist --workdir=/tmp/piwae_mnist
  python -m aelab.main --config=configs/piwae.py --config.piwae.num_estimates=4 --workdir=/tmp/piwae_4x8

M = piwae.num_estimates = 8 and K = vae.num_samples = 8 (the paper's PIWAE(8, 8)). train/loss is -IWAE(64),
train/neg_miwae the encoder's bound; test/nll is the importance-sampled -log p(x), nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('piwae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.piwae.num_estimates = 8
  config.vae.num_samples = 8
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
