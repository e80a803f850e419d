"""VAE with planar flows (Rezende & Mohamed 2015): the VAE of configs/vae.py, its posterior sample refined by
10 planar maps.

  python -m aelab.main --config=configs/vae_planar.py --workdir=/tmp/vae_planar          # bundled digits, offline
  python -m aelab.main --config=configs/vae_planar.py:idx=../shared/data/mnist --workdir=/tmp/vae_planar_mnist
  python -m aelab.main --config=configs/vae_planar.py --config.vae_planar.num_flows=20 --workdir=/tmp/planar20

train/log_det is the flows' mean log-determinant (nats); test/nll the importance-sampled -log p(x).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae_planar'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vae_planar.num_flows = 10
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
