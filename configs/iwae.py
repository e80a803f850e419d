"""Importance weighted autoencoder (Burda et al. 2016): the VAE of configs/vae.py trained on the IWAE bound.

  python -m aelab.main --config=configs/iwae.py --workdir=/tmp/iwae                  # bundled digits, offline
  python -m aelab.main --config=configs/iwae.py:idx=../shared/data/mnist --workdir=/tmp/iwae_mnist
  python -m aelab.main --config=configs/iwae.py --config.vae.num_samples=50 --workdir=/tmp/iwae50

vae.num_samples is k (5 here; 1 is the ELBO). train/neg_iwae is the negative bound in nats per example;
test/nll is the importance-sampled -log p(x) with eval.nll_samples (5000) samples.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vae.num_samples = 5
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
