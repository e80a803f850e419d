"""beta-TCVAE (Chen et al. 2018): the VAE of configs/vae.py with the total correlation weighted by
beta_tcvae.tc_weight (beta; 1 is the plain VAE), estimated by minibatch-weighted sampling.

  python -m aelab.main --config=configs/beta_tcvae.py --workdir=/tmp/beta_tcvae            # bundled digits, offline
  python -m aelab.main --config=configs/beta_tcvae.py:shapes2d --workdir=/tmp/tcvae_shapes  # test/mig, ...
  python -m aelab.main --config=configs/beta_tcvae.py:shapes2d --config.data.shapes2d.counts="(3,3,8,8,8)" \\
      --config.data.shapes2d.size=32 --config.beta_tcvae.tc_weight=4 --workdir=/tmp/tcvae_small

On shapes2d (aelab/shapes2d.py) the run ends with the disentanglement metrics in summary.json.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('beta_tcvae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=10, activation='relu', likelihood='bernoulli')
  config.beta_tcvae.tc_weight = 6.0
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
