"""CIWAE(beta) (Rainforth et al. 2018): the VAE of configs/vae.py trained on beta ELBO + (1 - beta) IWAE.

  python -m aelab.main --config=configs/ciwae.py --workdir=/tmp/ciwae              # bundled digits, offline
  python -m aelab.main --config=configs/ciwae.py:idx=../shared/data/mnist --workdir=/tmp/ciwae_mnist
  python -m aelab.main --config=configs/ciwae.py --config.ciwae.beta=0.05 --workdir=/tmp/ciwae_05

K = vae.num_samples = 64 samples per example, beta = ciwae.beta = 0.5; test/nll is the importance-sampled
-log p(x), nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ciwae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.ciwae.beta = 0.5
  config.vae.num_samples = 64
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
