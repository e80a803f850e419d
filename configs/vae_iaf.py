"""VAE with inverse autoregressive flows (Kingma et al. 2016): the VAE of configs/vae.py, its posterior sample
refined by 2 IAF steps (MADE 64 hidden units).

  python -m aelab.main --config=configs/vae_iaf.py --workdir=/tmp/vae_iaf                # bundled digits, offline
  python -m aelab.main --config=configs/vae_iaf.py:idx=../shared/data/mnist --workdir=/tmp/vae_iaf_mnist
  python -m aelab.main --config=configs/vae_iaf.py --config.vae_iaf.num_flows=4 --workdir=/tmp/vae_iaf4

train/log_det is the flows' mean log-determinant (nats); test/nll the importance-sampled -log p(x).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae_iaf'), arg)
  config.data.binarize = 'dynamic'
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.vae_iaf.update(num_flows=2, made_hidden=(64,))
  config.train.update(num_epochs=40 if config.data.name == 'digits' else 20, batch_size=64)
  return aelab_config.adapt_to_data(config)
