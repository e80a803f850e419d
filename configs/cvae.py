"""Conditional VAE (Sohn et al. 2015) on the labels: 784-400-20 (the VAE's), ReLU, Bernoulli likelihood.

  python -m aelab.main --config=configs/cvae.py --workdir=/tmp/cvae          # bundled digits, offline
  python -m aelab.main --config=configs/cvae.py:idx=../shared/data/mnist --workdir=/tmp/cvae_mnist
  python -m aelab.sample --workdir=/tmp/cvae --sampler=prior --num=16 --label=3   # sixteen 3s

The encoder q(z|x,y) and the decoder p(x|z,y) see the one-hot label; the data needs labels (digits, mnist,
idx with a labels file, npz with y). test/neg_elbo and test/nll are -log p(x|y) bounds, nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('cvae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.cvae.num_classes = 10
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
