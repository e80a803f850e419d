"""DIP-VAE (Kumar et al. 2018): the VAE of configs/vae.py plus a penalty pushing the covariance of the
code to the identity (dip_vae.dip_type ii by default: the aggregate posterior's; i: the posterior means').

  python -m aelab.main --config=configs/dip_vae.py --workdir=/tmp/dip_vae                 # bundled digits, offline
  python -m aelab.main --config=configs/dip_vae.py:shapes2d --workdir=/tmp/dip_shapes      # test/mig, ...
  python -m aelab.main --config=configs/dip_vae.py --config.dip_vae.dip_type=i --config.dip_vae.dip_lambda_od=10 \\
      --config.dip_vae.dip_lambda_d=100 --workdir=/tmp/dip_i

lambda_od (off-diagonal) and lambda_d (diagonal) are traced hyperparameters: a sweep over them is one program.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('dip_vae'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=10, activation='relu', likelihood='bernoulli')
  config.dip_vae.update(dip_type='ii', dip_lambda_od=5.0, dip_lambda_d=5.0)
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
