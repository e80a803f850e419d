"""FactorVAE (Kim & Mnih 2018): the VAE of configs/vae.py plus factor_vae.tc_weight (gamma) times the total
correlation, estimated by a discriminator on dimension-permuted codes (its own Adam).

  python -m aelab.main --config=configs/factor_vae.py --workdir=/tmp/factor_vae            # bundled digits, offline
  python -m aelab.main --config=configs/factor_vae.py:shapes2d --workdir=/tmp/fvae_shapes   # test/mig, ...
  python -m aelab.main --config=configs/factor_vae.py --config.factor_vae.tc_weight=40 --workdir=/tmp/fvae40

The discriminator is 6 x 1000 leaky-ReLU units on shapes2d (the paper's), 2 x 256 on digits.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('factor_vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=10, activation='relu', likelihood='bernoulli')
  small = config.data.name != 'shapes2d'
  config.factor_vae.update(tc_weight=10.0, disc_hidden=(256, 256) if small else (1000,) * 6,
                           disc_learning_rate=1e-3 if small else 1e-4)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
