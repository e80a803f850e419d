"""VAE with a posterior refined by planar flows (Rezende & Mohamed 2015, Variational Inference with Normalizing
Flows, Sec. 4.1).

The encoder's Gaussian sample ``z_0 ~ q_0(z|x)`` goes through ``vae_planar.num_flows`` planar maps
``f(z) = z + u_hat tanh(w.z + b)`` (``aelab.nn.flows.PlanarFlow``; ``u_hat`` keeps each map invertible,
Appendix A.1) to ``z_K``; the ELBO and the importance log-weights carry ``sum_k log|1 + u_hat_k . psi_k(z)|``
(Eq. 12-13). Objective, metrics and log-weights are those of ``vae_iaf`` (:func:`aelab.models.vae_iaf.flow_family`);
the flows' parameters are shared across examples (not amortized), as in pythae's ``VAE_LinNF``.
"""
from typing import Sequence

import ml_collections

from aelab.models import vae_iaf
from aelab.models.family import Family
from aelab.nn import flows

SECTION = 'vae_planar'
CONFIG = {
    'num_flows': (10, 'planar maps K applied to the Gaussian posterior sample'),
}
BUILDS_ON = ('vae',)
PENALTIES = vae_iaf.PENALTIES
HYPERPARAMS = dict(vae_iaf.HYPERPARAMS)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.vae_planar`` and the VAE options it supports. Raises ConfigError naming the field."""
  vae_iaf.check_flow_vae(config, config.vae_planar.num_flows)


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The planar-flow VAE's ``Family`` (see ``aelab/models/family.py``)."""
  return vae_iaf.flow_family(config, data_shape, flows.Flow('planar', config.vae_planar.num_flows))
