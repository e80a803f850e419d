"""InfoVAE / MMD-VAE (Zhao et al. 2019): the VAE of configs/vae.py with the MMD to N(0, I), alpha = 1.

  python -m aelab.main --config=configs/info_vae.py --workdir=/tmp/info_vae        # bundled digits, offline
  python -m aelab.main --config=configs/info_vae.py:idx=../shared/data/mnist --workdir=/tmp/info_vae_mnist
  python -m aelab.main --config=configs/info_vae.py --config.info_vae.alpha=0 --workdir=/tmp/info_vae_a0

loss = recon + (vae.kl_weight - alpha) KL + (alpha + lambda - 1) MMD^2 (Zhao et al. 2019, Eq. 6): alpha = 1
drops the KL (the MMD-VAE). test/neg_elbo and test/nll are the VAE's (nats per example).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('info_vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.info_vae.update(alpha=1.0, lambda_=1000.0, kernel='imq', kernel_bandwidth=1.0)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
