"""JumpReLU sparse autoencoder (Rajamanoharan et al. 2024): ``pre * H(pre - theta)`` with a learned
threshold per latent, trained with an L0 penalty through straight-through (rectangle-kernel) gradients.

  python -m aelab.main --config=configs/sae_jumprelu.py --workdir=/tmp/sae_jumprelu               # digits
  python -m aelab.main --config=configs/sae_jumprelu.py:superposition --workdir=/tmp/sae_jr_sp
  python -m aelab.main --config=configs/sae_jumprelu.py:superposition --config.sae.l0_weight=0.01 \\
      --workdir=/tmp/sae_jr_sp_l0

``sae.l0_weight`` (traced: a sweep over it is one program) trades L0 against reconstruction;
``sae.bandwidth`` is the kernel width and ``sae.threshold_init`` the initial threshold. With Adam the
log-threshold moves by at most about the learning rate per step, so thresholds need many steps (or a
large rate) to move far from their initial value. Data as in ``configs/sae_topk.py``.
"""
from aelab import config as aelab_config


def get_config(arg=None):
  config = aelab_config.set_data(aelab_config.base('sae'), arg)
  sp = config.data.name == 'superposition'
  config.model.update(latent_dim=96 if sp else 256, likelihood='mse',
                      output_activation='identity')
  config.sae.update(activation='jumprelu', l0_weight=0.03, aux_weight=0.0, bandwidth=0.05, threshold_init=0.1)
  config.optimizer.learning_rate = 1e-3
  config.train.update(num_epochs=20 if sp else 40, batch_size=256 if sp else 64)
  return config
