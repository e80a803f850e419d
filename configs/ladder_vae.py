"""Ladder VAE (Sonderby et al. 2016): two Gaussian levels, z_1 of 20 and z_2 of 10, the 784-400 encoder and
decoder of configs/vae.py, a 256-unit MLP between the levels, KL warm-up over 2,000 steps.

  python -m aelab.main --config=configs/ladder_vae.py --workdir=/tmp/ladder_vae              # bundled digits, offline
  python -m aelab.main --config=configs/ladder_vae.py:idx=../shared/data/mnist --workdir=/tmp/ladder_vae_mnist
  python -m aelab.main --config=configs/ladder_vae.py --config.ladder_vae.upper_latent_dims='(16, 8)' \
      --config.ladder_vae.level_hidden='(128, 64)' --workdir=/tmp/ladder3

test/kl_1, test/kl_2, ... are the levels' KL terms (nats per example, bottom first).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ladder_vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.ladder_vae.update(upper_latent_dims=(10,), level_hidden=(256,))
  config.vae.kl_warmup_steps = 2000
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
