"""VAE with a VampPrior (Tomczak & Welling 2018): the VAE of configs/vae.py, prior = mixture of the posteriors of
K learned pseudo-inputs.

  python -m aelab.main --config=configs/vamp.py --workdir=/tmp/vamp                # bundled digits, offline
  python -m aelab.main --config=configs/vamp.py:idx=../shared/data/mnist --workdir=/tmp/vamp_mnist
  python -m aelab.main --config=configs/vamp.py --config.vamp.num_components=50 --workdir=/tmp/vamp50

K = vamp.num_components (100 on digits, 500 otherwise, the paper's MNIST choice). test/neg_elbo (one-sample
KL estimate) and test/nll use the VampPrior's log-density, nats per example.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vamp'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vamp.num_components = 100 if config.data.name == 'digits' else 500
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
