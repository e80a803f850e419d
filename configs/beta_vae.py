"""beta-VAE (Higgins et al. 2017): the VAE of configs/vae.py with kl_weight (beta) 4, a linear KL warm-up
and an optional free-bits floor (Kingma et al. 2016).

  python -m aelab.main --config=configs/beta_vae.py --workdir=/tmp/beta_vae          # bundled digits, offline
  python -m aelab.main --config=configs/beta_vae.py:idx=../shared/data/mnist --workdir=/tmp/beta_vae_mnist
  python -m aelab.main --config=configs/beta_vae.py --config.vae.kl_weight=8 --config.vae.free_bits=0.1 \\
      --workdir=/tmp/beta8_fb

kl_weight rises linearly from 0 to beta over vae.kl_warmup_steps steps (0: no warm-up; none on shapes2d); free_bits is a
floor in nats on each latent dimension's batch-mean KL (0: off). All three reach the step as traced
hyperparameters. The README's beta sweep (0.5 ... 8) uses configs/vae.py with --config.vae.kl_weight.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  warmup = 0 if config.data.name == 'shapes2d' else 200 if small else 1000
  config.vae.update(kl_weight=4.0, kl_warmup_steps=warmup, free_bits=0.0)
  config.train.update(num_epochs=40 if small else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
