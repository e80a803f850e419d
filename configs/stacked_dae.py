"""Stacked denoising autoencoders (Vincent et al. 2010, JMLR): greedy layer-wise pretraining, then
supervised fine-tuning of the stack under a softmax layer, against the same network from random init.

  python experiments/stacked_dae.py --config=configs/stacked_dae.py                 # bundled digits
  python experiments/stacked_dae.py --config=configs/stacked_dae.py:idx=../shared/data/mnist \\
      --labels=100,1000,0 --seeds=0,1,2 --out=runs/stacked_dae_mnist

Each layer: sigmoid code, masking noise (a fraction ``corruption.rate`` of its inputs set to 0),
cross-entropy reconstruction of its clean input; 784-500-500 on 28x28 images, 64-256-128 on digits.
Fine-tuning: Adam, ``finetune.num_steps`` steps whatever the number of labels.
"""
import ml_collections

from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('ae'), arg)
  small = config.data.name in ('digits', 'npz', 'csv')
  config.model.update(hidden=(), activation='sigmoid', likelihood='bernoulli')
  config.corruption.update(name='masking', rate=0.25)
  config.pretrain = ml_collections.ConfigDict(dict(
      widths=(256, 128) if small else (500, 500), num_epochs=30 if small else 20, batch_size=32 if small else 64,
      learning_rate=1e-3))
  config.finetune = ml_collections.ConfigDict(dict(num_steps=1500 if small else 3000, batch_size=32 if small else 64,
                                                   learning_rate=3e-4))
  return config
