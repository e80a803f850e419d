"""VQ-VAE (van den Oord et al. 2017): a conv encoder to a map of code vectors, one per position, each
replaced by its nearest codebook entry; EMA codebook (decay 0.99), commitment weight 0.25, dead-code restarts.

  python -m aelab.main --config=configs/vqvae.py --workdir=/tmp/vqvae                  # bundled digits (8x8)
  python -m aelab.main --config=configs/vqvae.py:idx=../shared/data/mnist --workdir=/tmp/vqvae_mnist
  python -m aelab.main --config=configs/vqvae.py:mnist --workdir=/tmp/vqvae_mnist     # tensorflow-datasets
  # MLP nets, 4 code vectors of 8 dimensions cut from a 32-unit latent:
  python -m aelab.main --config=configs/vqvae.py --config.model.net=mlp --config.vqvae.code_layout=vectors \\
      --config.model.latent_dim=32 --workdir=/tmp/vqvae_mlp

Digits: a 2x2 grid of codes (conv channels 16, 32), 64 codes of 8 dimensions; MNIST (28x28): a 7x7 grid
(channels 32, 64, as configs/ae.py with model.net=conv), 256 codes of 16 dimensions. summary.json has
test/recon_mse (per pixel), test/codebook_perplexity and test/codebook_usage. No prior over codes is fitted
during training; `python -m aelab.sample --workdir=DIR --sampler=pixelcnn` fits a gated PixelCNN on the
codes afterwards and samples. The output is linear (MSE on an identity output): with a sigmoid
output the conv-map decoder on MNIST saturated to an all-black image within 50 steps (test MSE stuck at 0.113).
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vqvae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(net='conv', conv_channels=(16, 32) if small else (32, 64), hidden=(128,) if small else (512,),
                      latent_dim=32, activation='relu', likelihood='mse', output_activation='identity')
  config.vqvae.update(code_layout='spatial', code_dim=8 if small else 16, codebook_size=64 if small else 256,
                      commitment_weight=0.25, codebook_ema=0.99, dead_code_steps=50)
  config.train.update(num_epochs=40 if small else 20, batch_size=64 if small else 128)
  return aelab_config.adapt_to_data(config)
