"""Convolutional VAE: two 4x4 stride-2 conv layers (32, 64 channels), a 256-unit dense layer, 20 latents;
the decoder mirrors it with sub-pixel (3x3 conv + depth-to-space) upsampling.

  python -m aelab.main --config=configs/conv_vae.py --workdir=/tmp/conv_vae          # bundled digits (8x8)
  python -m aelab.main --config=configs/conv_vae.py:idx=../shared/data/mnist --workdir=/tmp/conv_vae_mnist
  python -m aelab.main --config=configs/conv_vae.py:cifar10 --config.model.likelihood=gaussian \\
      --config.data.binarize=none --workdir=/tmp/conv_vae_cifar   # 32x32x3 (tfds)

Same likelihood, binarization and latent size as configs/vae.py. Images only (H and W divisible by 4):
tabular data stops with a ConfigError.
The end-of-training NLL uses eval.nll_samples=1000 here (the conv decoder is ~10x the MLP's cost on a
CPU); evaluate with more later: python -m aelab.evaluate --workdir=/tmp/conv_vae_mnist --k=5000
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('vae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.data.binarize = 'dynamic'
  config.model.update(net='conv', conv_channels=(16, 32) if small else (32, 64),
                      hidden=(128,) if small else (256,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.train.update(num_epochs=40 if small else 20, batch_size=64)
  config.eval.nll_samples = 1000
  return aelab_config.adapt_to_data(config)
