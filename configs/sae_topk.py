"""TopK sparse autoencoder (Gao et al. 2024): the k largest pre-activations of each example, ReLU'd, with
unit-norm decoder rows, the AuxK loss for dead latents and the pre-encoder bias at the geometric median.

  python -m aelab.main --config=configs/sae_topk.py --workdir=/tmp/sae_topk                 # digits, offline
  python -m aelab.main --config=configs/sae_topk.py:superposition --workdir=/tmp/sae_sp     # ground truth
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=batchtopk \\
      --workdir=/tmp/sae_batchtopk
  # ReLU with the decoder-norm-scaled L1 penalty (Anthropic 2024):
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=relu \\
      --config.sae.l1_weight=0.3 --config.sae.unit_norm_decoder=False --config.sae.aux_weight=0 --workdir=/tmp/sae_relu

``superposition``: 96 true features in 32 dimensions (3x), each active with probability 1/32 (about 3
per example), magnitudes uniform in [0, 1]; 96 latents, k = 4. summary.json: ``test/l0``,
``test/dead_fraction``, ``test/explained_variance``, ``test/nmse`` and ``test/mmcs`` (mean max cosine
similarity of the true features with the decoder rows). ``digits``: 256 latents, k = 16.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('sae'), arg)
  sp = config.data.name == 'superposition'
  config.model.update(latent_dim=96 if sp else 256, likelihood='mse',
                      output_activation='identity')
  config.sae.update(activation='topk', k=4 if sp else 16, aux_k=32, aux_weight=1 / 32, dead_steps=500)
  config.optimizer.learning_rate = 1e-3
  config.train.update(num_epochs=20 if sp else 40, batch_size=256 if sp else 64)
  return config
