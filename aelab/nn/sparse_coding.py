"""Pure parts of sparse autoencoders' training beyond the plain sparse code (no config): the L_p sparsity
penalty and its p-annealing, the warm-up of the sparsity coefficient, the Gated SAE's code and losses, the
Matryoshka SAE's prefix losses, resampling of dead latents, and the feature-density statistics.

Shapes: ``x_BxD`` inputs, ``pre_BxM`` pre-activations, ``z_BxM`` codes, ``W_dec`` ``M x D`` (rows: the
dictionary), ``W_enc`` ``D x M``. Squared errors are summed over the ``D`` features (the SAE literature's
``||x - x_hat||^2``), per example unless said otherwise.
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from aelab.nn import schedules

DENSITY_EPS = 1e-10  # added to firing frequencies before log10 (SAELens's feature-density histogram)
DENSE_FREQUENCY = 0.1  # a latent firing on more than this fraction of examples counts as dense
DENSITY_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
RESAMPLE_ENCODER_SCALE = 0.2  # resampled encoder norm = 0.2 x mean alive encoder norm (Bricken et al. 2023)


def sparsity_warmup(step: jax.Array, warmup_steps: jax.Array) -> jax.Array:
  """The factor of the L1 / L0 coefficient: ``min(1, step / warmup_steps)``, 1 when ``warmup_steps`` is 0
  (a linear warm-up from 0, as SAELens's ``l1_warm_up_steps``); traceable, float32 scalar."""
  return schedules.kl_warmup_factor(step, warmup_steps)


def annealed_p(step: jax.Array, p_final: jax.Array, start: jax.Array, num_steps: jax.Array) -> jax.Array:
  """The exponent of the L_p penalty at ``step``: 1 until ``start``, then linear to ``p_final`` over
  ``num_steps`` steps, then ``p_final`` (p-annealing, Karvonen et al. 2024, "Measuring progress in
  dictionary learning for language model interpretability with board game models", Sec. 3). All
  arguments may be traced; ``num_steps = 0`` jumps to ``p_final`` at ``start``. Float32 scalar."""
  step, start = jnp.asarray(step, jnp.float32), jnp.asarray(start, jnp.float32)
  num_steps = jnp.asarray(num_steps, jnp.float32)
  t = jnp.clip((step - start) / jnp.maximum(num_steps, 1.0), 0.0, 1.0)
  t = jnp.where(num_steps > 0, t, (step >= start).astype(jnp.float32))
  return 1.0 + (jnp.asarray(p_final, jnp.float32) - 1.0) * t


def lp_penalty(z_BxM: jax.Array, decoder_norms_M: jax.Array, p: jax.Array) -> jax.Array:
  """``sum_i |z_i|^p ||W_dec,i||`` per example (shape ``B``): the decoder-norm-scaled L1 penalty at
  ``p = 1`` (Anthropic, Circuits Updates April 2024), its L_p generalisation for p-annealing (Karvonen et
  al. 2024). Zero entries contribute 0 with a zero gradient (no ``0^(p-1)`` for ``p < 1``)."""
  active = z_BxM != 0
  safe = jnp.where(active, jnp.abs(z_BxM), 1.0)
  return jnp.sum(jnp.where(active, safe ** p, 0.0) * decoder_norms_M[None], axis=1)


def gated_code(x_cent_BxD: jax.Array, w_gate_DxM: jax.Array, b_gate_M: jax.Array, r_mag_M: jax.Array,
               b_mag_M: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(z_BxM, pi_gate_BxM)`` of a Gated SAE (Rajamanoharan et al. 2024a, "Improving dictionary learning
  with gated sparse autoencoders", Eq. 6-7): the gate ``pi_gate = x W_gate + b_gate`` decides which
  latents fire (``H(pi_gate)``, no gradient through it), the magnitude path shares the gate's directions
  rescaled per latent, ``W_mag = W_gate * exp(r_mag)``, and ``z = H(pi_gate) * ReLU(x W_mag + b_mag)``.
  ``x_cent`` is the input minus the decoder bias."""
  pi_gate = x_cent_BxD @ w_gate_DxM + b_gate_M[None]
  pi_mag = x_cent_BxD @ (w_gate_DxM * jnp.exp(r_mag_M)[None]) + b_mag_M[None]
  gate = jax.lax.stop_gradient((pi_gate > 0).astype(pi_gate.dtype))
  return gate * jax.nn.relu(pi_mag), pi_gate


def gated_losses(pi_gate_BxM: jax.Array, w_dec_MxD: jax.Array, b_dec_D: jax.Array,
                 x_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(sparsity_B, aux_B)`` of a Gated SAE (Rajamanoharan et al. 2024a, Eq. 8; SAELens's
  ``GatedTrainingSAE``): the L1 of the gate's ReLU'd pre-activations times the decoder row norms, and the
  auxiliary squared error of the reconstruction from ``ReLU(pi_gate)`` through the frozen decoder (no
  gradient for ``W_dec`` and ``b_dec``), which trains the gate to reconstruct."""
  via_gate = jax.nn.relu(pi_gate_BxM)
  sparsity = jnp.sum(via_gate * jnp.linalg.norm(w_dec_MxD, axis=1)[None], axis=1)
  x_hat = via_gate @ jax.lax.stop_gradient(w_dec_MxD) + jax.lax.stop_gradient(b_dec_D)[None]
  return sparsity, jnp.sum(jnp.square(x_BxD - x_hat), axis=1)


def matryoshka_losses(z_BxM: jax.Array, w_dec_MxD: jax.Array, b_dec_D: jax.Array, x_BxD: jax.Array,
                      prefixes: Sequence[int]) -> jax.Array:
  """Squared errors of the nested dictionaries, shape ``len(prefixes) x B``: row ``j`` reconstructs ``x``
  from the first ``prefixes[j]`` latents only, ``||x - (z[:, :m] W_dec[:m] + b_dec)||^2`` (Bussmann et
  al. 2025, "Learning multi-level features with Matryoshka sparse autoencoders", Eq. 3: the loss is the
  sum over prefixes). Computed by cumulative sums of the per-block reconstructions."""
  bounds = [0, *prefixes]
  blocks = [z_BxM[:, a:b] @ w_dec_MxD[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
  x_hat_PxBxD = jnp.cumsum(jnp.stack(blocks), axis=0) + b_dec_D[None, None]
  return jnp.sum(jnp.square(x_BxD[None] - x_hat_PxBxD), axis=2)


def resample_dead(key: jax.Array, params: dict, x_BxD: jax.Array, squared_error_B: jax.Array,
                  dead_M: jax.Array) -> dict:
  """Bricken et al. 2023 ("Towards monosemanticity", Appendix: neuron resampling): each dead latent gets
  an input drawn from the batch with probability proportional to the square of its squared error; the
  decoder row becomes that input minus ``b_dec``, at unit norm, the encoder column the same direction
  scaled to ``0.2 x`` the mean norm of the alive latents' encoder columns (1 when none is alive), the
  encoder bias 0 (a Gated SAE's ``b_mag`` and ``r_mag`` too). Alive latents are unchanged. Returns the
  new params (the caller resets their optimizer state)."""
  probs = jnp.square(squared_error_B) + 1e-12
  idx_M = jax.random.choice(key, x_BxD.shape[0], (dead_M.shape[0],), p=probs / jnp.sum(probs))
  direction_MxD = x_BxD[idx_M] - params['b_dec'][None]
  direction_MxD = direction_MxD / jnp.maximum(jnp.linalg.norm(direction_MxD, axis=1, keepdims=True), 1e-12)
  enc_norms_M = jnp.linalg.norm(params['W_enc'], axis=0)
  alive = ~dead_M
  mean_alive = jnp.where(jnp.any(alive), jnp.sum(enc_norms_M * alive) / jnp.maximum(jnp.sum(alive), 1), 1.0)
  new = dict(params)
  new['W_dec'] = jnp.where(dead_M[:, None], direction_MxD, params['W_dec'])
  new['W_enc'] = jnp.where(dead_M[None], RESAMPLE_ENCODER_SCALE * mean_alive * direction_MxD.T, params['W_enc'])
  for name in ('b_enc', 'b_mag', 'r_mag'):
    if name in params:
      new[name] = jnp.where(dead_M, 0.0, params[name])
  return new


def resampled_mask(params: dict, dead_M: jax.Array) -> dict:
  """Per parameter, where resampling wrote (broadcastable to it): used to reset the optimizer state of
  those entries (``optax.tree_utils.tree_map_params``)."""
  rows = {'W_dec': dead_M[:, None], 'W_enc': dead_M[None], 'b_enc': dead_M, 'b_mag': dead_M, 'r_mag': dead_M}
  return {name: rows.get(name, jnp.zeros((), bool)) for name in params}


def firing_frequencies(z_NxM: jax.Array) -> jax.Array:
  """The fraction of the ``N`` examples on which each latent is nonzero: shape ``M``, in [0, 1]."""
  return jnp.mean(z_NxM != 0, axis=0)


def density_stats(frequency_M: jax.Array) -> dict[str, jax.Array]:
  """Feature-density statistics of firing frequencies (Bricken et al. 2023's feature-density histogram,
  SAELens's ``log10(frequency + 1e-10)``): ``log10_density_qNN`` the quantiles ``DENSITY_QUANTILES`` of
  ``log10(frequency + 1e-10)`` over latents (dead ones at -10), ``dense_fraction`` the fraction of
  latents firing on more than ``DENSE_FREQUENCY`` (10%) of examples."""
  log_density = jnp.log10(frequency_M + DENSITY_EPS)
  out = {f'log10_density_q{round(100 * q):02d}': jnp.quantile(log_density, q) for q in DENSITY_QUANTILES}
  out['dense_fraction'] = jnp.mean(frequency_M > DENSE_FREQUENCY)
  return out
