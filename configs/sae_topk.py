"""TopK sparse autoencoder (Gao et al. 2024): the k largest pre-activations of each example, ReLU'd, with
unit-norm decoder rows, the AuxK loss for dead latents and the pre-encoder bias at the geometric median.

  python -m aelab.main --config=configs/sae_topk.py --workdir=/tmp/sae_topk                 # digits, offline
  python -m aelab.main --config=configs/sae_topk.py:superposition --workdir=/tmp/sae_sp     # ground truth
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=batchtopk \\
      --workdir=/tmp/sae_batchtopk
  # ReLU with the decoder-norm-scaled L1 penalty (Anthropic 2024):
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=relu \\
      --config.sae.l1_weight=0.3 --config.sae.unit_norm_decoder=False --config.sae.aux_weight=0 --workdir=/tmp/sae_relu
  # Gated SAE (Rajamanoharan et al. 2024a), its gate's L1 weight traced:
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=gated \\
      --config.sae.l1_weight=0.1 --config.sae.aux_weight=0 --workdir=/tmp/sae_gated
  # Matryoshka TopK (Bussmann et al. 2025) on hierarchical features (parents with 3 children each):
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.data.superposition.hierarchy=3 \\
      --config.data.superposition.num_features=64 --config.data.superposition.dim=48 \\
      --config.data.superposition.probability=0.1 --config.data.superposition.child_probability=1.0 \\
      --config.model.latent_dim=64 --config.sae.k=3 --config.sae.matryoshka_prefixes='(16,)' --workdir=/tmp/sae_mat
  # ReLU + L_p with p annealed from 1 to 0.5 over 1000 steps, the coefficient warmed up over 200 steps:
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=relu \\
      --config.sae.l1_weight=0.1 --config.sae.unit_norm_decoder=False --config.sae.aux_weight=0 \\
      --config.sae.p_final=0.5 --config.sae.p_anneal_steps=1000 --config.sae.sparsity_warmup_steps=200 \\
      --workdir=/tmp/sae_lp
  # Resampling of dead latents every 500 steps (Bricken et al. 2023):
  python -m aelab.main --config=configs/sae_topk.py:superposition --config.sae.activation=batchtopk \\
      --config.sae.k=2 --config.sae.aux_weight=0 --config.sae.resample_every=500 --workdir=/tmp/sae_resample

``superposition``: 96 true features in 32 dimensions (3x), each active with probability 1/32 (about 3
per example), magnitudes uniform in [0, 1]; 96 latents, k = 4. summary.json: ``test/l0``,
``test/dead_fraction``, ``test/explained_variance``, ``test/nmse``, ``test/mmcs`` (mean max cosine
similarity of the true features with the decoder rows), the feature density (``test/log10_density_q10``
... ``q90``, ``test/dense_fraction``) and, on hierarchical data, ``test/parent_mmcs`` and
``test/absorption``; ``figures/feature_density.png``. ``digits``: 256 latents, k = 16.
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
