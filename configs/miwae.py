"""MIWAE(M, K) (Rainforth et al. 2018): the VAE of configs/vae.py trained on the mean of M IWAE bounds of K samples.

  python -m aelab.main --config=configs/miwae.py --workdir=/tmp/miwae              # bundled digits, offline
  python -m aelab.main --config=configs/miwae.py:idx=../shared/data/mnist --workdir=/tmp/miwae_mnist
  python -m aelab.main --config=configs/miwae.py --config.miwae.num_estimates=4 --workdir=/tmp/miwae_4x8

M = miwae.num_estimates = 8 and K = vae.num_samples = 8 (the paper's MIWAE(8, 8)). train/neg_iwae is -IWAE(64)
of the same samples; test/nll is the importance-sampled -log p(x), nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('miwae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.miwae.num_estimates = 8
  config.vae.num_samples = 8
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
