"""Regularized autoencoder, RAE (Ghosh et al. 2020): 784-400-20, ReLU, Bernoulli cost, gradient penalty.

  python -m aelab.main --config=configs/rae.py --workdir=/tmp/rae                  # bundled digits, offline
  python -m aelab.main --config=configs/rae.py:idx=../shared/data/mnist --workdir=/tmp/rae_mnist
  python -m aelab.main --config=configs/rae.py --config.rae.regularizer=l2 --workdir=/tmp/rae_l2

The loss is the reconstruction cost + rae.code_weight * 1/2 ||z||^2 + rae.decoder_weight * the decoder's
regularizer (rae.regularizer: gp, the squared Frobenius norm of its Jacobian; l2, its squared parameters).
The widths match configs/vae.py.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('rae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.rae.update(regularizer='gp', code_weight=1.0, decoder_weight=1e-3)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
