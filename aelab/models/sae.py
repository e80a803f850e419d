"""Sparse autoencoders for dictionary learning (``config.model.name = 'sae'``).

One hidden layer of ``M = model.latent_dim`` latents: ``pre = (x - b_dec) W_enc + b_enc``, a sparse code
``z = sigma(pre)`` and the reconstruction ``x_hat = z W_dec + b_dec`` (rows of ``W_dec``: the dictionary,
``M x D``). ``sae.activation`` picks ``sigma`` and its sparsity mechanism:

- ``topk``: the ``sae.k`` largest pre-activations of each example, ReLU'd (Gao et al. 2024, Scaling and
  evaluating sparse autoencoders);
- ``batchtopk``: the ``k * B`` largest ReLU'd pre-activations of the batch (Bussmann et al. 2024,
  BatchTopK Sparse Autoencoders); at evaluation, a threshold: an exponential moving average over training
  steps of the smallest kept activation (``params['threshold']``), so codes do not depend on the batch;
- ``jumprelu``: ``pre * H(pre - theta)`` with a learned per-latent threshold ``theta = exp(log_threshold)``
  and the penalty ``hp['l0_weight'] * sum_i H(pre_i - theta_i)``; ``H`` and the jump get straight-through
  gradients for ``theta`` with a rectangle kernel of width ``sae.bandwidth`` (Rajamanoharan et al. 2024,
  Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU SAEs);
- ``relu``: ``ReLU(pre)`` with the L1 penalty ``hp['l1_weight'] * sum_i z_i ||W_dec,i||`` (Anthropic,
  Circuits Updates April 2024: the penalty scaled by decoder norms).

Common parts: decoder rows of unit norm after every step, with the gradient's component parallel to
each row removed first (``sae.unit_norm_decoder``; Bricken et al. 2023); the auxiliary loss AuxK that
revives dead latents: the main residual ``e = x - x_hat`` (no gradient) reconstructed by the
``sae.aux_k`` largest pre-activations of the latents that have not fired for ``sae.dead_steps`` steps,
``||e - e_hat||^2 / ||e - mean(e)||^2`` (batch sums), weight ``hp['aux_weight']`` (Gao et al. 2024;
zero when no latent is dead); ``b_dec`` (the pre-encoder bias) set at the first step to the
geometric median (Weiszfeld iterations) or mean of the first training batch (``sae.bias_init``;
Bricken et al. 2023), and ``W_enc`` initialised as ``W_dec`` transposed (Gao et al. 2024).

Reconstruction error ``recon``: squared error summed over the ``D`` features, per example (the SAE
literature's ``||x - x_hat||^2``); ``recon_mse`` is per feature. ``k``, ``aux_k`` and the activation are
static; the three weights are traced, so a sweep over them is one program. Parameters: ``{'W_enc': D x M,
'b_enc': M, 'W_dec': M x D, 'b_dec': D}`` plus ``log_threshold`` (M, jumprelu) or ``threshold``
(scalar, batchtopk). The dead-latent counters live in the optimizer state.

Architectures and training aids of the last two years (the pure parts in ``aelab.nn.sparse_coding``):

- ``gated`` (Rajamanoharan et al. 2024a, Improving Dictionary Learning with Gated Sparse Autoencoders): a
  gate ``pi_gate = (x - b_dec) W_enc + b_enc`` decides which latents fire, a magnitude path sharing its
  directions, ``W_mag = W_enc * exp(r_mag)`` with its own bias ``b_mag``, sets their values; the loss adds
  ``hp['l1_weight']`` times the L1 of ``ReLU(pi_gate)`` scaled by the decoder norms and the squared error
  of the reconstruction from ``ReLU(pi_gate)`` through the frozen decoder. Extra parameters ``r_mag``,
  ``b_mag`` (M).
- Matryoshka (``sae.matryoshka_prefixes``, any activation; Bussmann et al. 2025, Learning Multi-Level
  Features with Matryoshka Sparse Autoencoders): the loss is the sum of the squared errors of the nested
  dictionaries, the first ``m`` latents for each prefix size ``m`` and the whole one.
- p-annealing (``sae.p_final``, ``p_anneal_start``, ``p_anneal_steps``; Karvonen et al. 2024): the L1 of
  relu and gated becomes ``sum |z_i|^p ||W_dec,i||`` with ``p`` going linearly from 1 to ``p_final``; the
  coefficient is not rescaled as p changes.
- a linear warm-up of ``l1_weight`` / ``l0_weight`` from 0 over ``sae.sparsity_warmup_steps`` steps.
- resampling of dead latents every ``sae.resample_every`` steps from the batch's poorly reconstructed
  inputs, the optimizer state of the rewritten rows reset to zero (Bricken et al. 2023; in
  :func:`make_update`, inside the compiled epoch).

The warm-up, the p-annealing and the resampling read the step from the training state; the warm-up and
p-annealing fields are traced (a sweep over them is one program), ``matryoshka_prefixes`` and
``resample_every`` are static.
"""
import dataclasses
import math
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab.data import superposition
from aelab.errors import check, check_choice
from aelab.models.family import Family
from aelab.nn import sparse_coding

ACTIVATIONS = ('topk', 'batchtopk', 'jumprelu', 'relu', 'gated')
BIAS_INITS = ('geometric_median', 'mean', 'zeros')
SECTION = 'sae'
CONFIG = {
    'activation': ('topk', "the sparse code's activation: 'topk', 'batchtopk', 'jumprelu', 'relu' or 'gated'"),
    'k': (4, 'active latents per example of topk and batchtopk'),
    'aux_k': (32, 'latents of the auxiliary loss AuxK (Gao et al. 2024)'),
    'dead_steps': (500, 'steps without firing before a latent counts as dead'),
    'aux_weight': (1 / 32, 'weight of the auxiliary loss AuxK'),
    'l1_weight': (0.0, 'weight of the L1 (L_p) penalty of relu and gated (on |z| times the decoder row norms)'),
    'l0_weight': (0.0, 'weight of the L0 penalty of jumprelu'),
    'bandwidth': (1e-3, 'width of the rectangle kernel of jumprelu\'s pseudo-gradient'),
    'threshold_init': (1e-3, 'initial threshold of jumprelu'),
    'unit_norm_decoder': (True, 'keep decoder rows at unit norm'),
    'bias_init': ('geometric_median', "decoder bias from the first batch: 'geometric_median', 'mean' or 'zeros'"),
    'matryoshka_prefixes': ((), 'Matryoshka SAE: sizes of the nested inner dictionaries (increasing, < latent_dim); '
                            '() for a plain SAE'),
    'sparsity_warmup_steps': (0, 'steps of the linear warm-up of l1_weight / l0_weight from 0 (0: none)'),
    'p_final': (1.0, 'p-annealing: the final exponent p of the L_p penalty of relu and gated (1: plain L1)'),
    'p_anneal_start': (0, 'p-annealing: the step at which p starts to fall from 1'),
    'p_anneal_steps': (0, 'p-annealing: steps over which p goes linearly from 1 to p_final'),
    'resample_every': (0, 'resample dead latents every this many steps (Bricken et al. 2023; 0: never)'),
}
HYPERPARAMS = {'l1_weight': 'sae.l1_weight', 'l0_weight': 'sae.l0_weight', 'aux_weight': 'sae.aux_weight',
               'sparsity_warmup_steps': 'sae.sparsity_warmup_steps', 'p_final': 'sae.p_final',
               'p_anneal_start': 'sae.p_anneal_start', 'p_anneal_steps': 'sae.p_anneal_steps'}
WEISZFELD_STEPS = 32
BATCHTOPK_MOMENTUM = 0.99  # of the evaluation threshold's moving average


@dataclasses.dataclass(frozen=True)
class Model:
  """The static structure of one SAE (``config.model`` and ``config.sae``)."""
  dim: int
  num_latents: int
  activation: str
  k: int
  aux_k: int
  dead_steps: int
  bandwidth: float
  threshold_init: float
  unit_norm_decoder: bool
  bias_init: str
  matryoshka_prefixes: tuple[int, ...] = ()
  resample_every: int = 0


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.sae`` against ``config.model``. Raises ConfigError naming the field and what is allowed."""
  m, s = config.model, config.sae
  check_choice(s.activation, ACTIVATIONS, 'sae.activation')
  check_choice(s.bias_init, BIAS_INITS, 'sae.bias_init')
  for field in ('k', 'aux_k'):
    check(isinstance(s[field], int) and 1 <= s[field] <= m.latent_dim,
          f'sae.{field}={s[field]} must be an integer in [1, model.latent_dim={m.latent_dim}].')
  check(s.dead_steps >= 1, f'sae.dead_steps={s.dead_steps} (steps without firing before a latent counts as dead) '
        'must be >= 1.')
  for field in ('aux_weight', 'l1_weight', 'l0_weight'):
    check(s[field] >= 0 and math.isfinite(s[field]), f'sae.{field}={s[field]} must be a number >= 0.')
  for field in ('bandwidth', 'threshold_init'):
    check(s[field] > 0, f'sae.{field}={s[field]} (JumpReLU) must be > 0.')
  prefixes = tuple(s.matryoshka_prefixes)
  check(all(isinstance(p, int) for p in prefixes) and list(prefixes) == sorted(set(prefixes))
        and all(1 <= p < m.latent_dim for p in prefixes),
        f'sae.matryoshka_prefixes={prefixes} must be increasing integers in [1, model.latent_dim={m.latent_dim}), '
        'e.g. (8, 32): the inner dictionaries (the whole one is always the last).')
  for field in ('sparsity_warmup_steps', 'p_anneal_start', 'p_anneal_steps', 'resample_every'):
    check(s[field] >= 0 and float(s[field]).is_integer(), f'sae.{field}={s[field]} must be a whole number of '
          'steps >= 0.')
  check(0 < s.p_final <= 1, f'sae.p_final={s.p_final} (the final exponent of the L_p penalty) must lie in (0, 1].')
  check(m.dtype == 'float32', 'model.dtype=bfloat16 is not implemented for model.name=sae (its encoder and '
        'decoder are plain float32 matrices): set --config.model.dtype=float32.')


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The SAE of ``config`` for examples of ``data_shape`` (flattened). Raises ValueError for an unknown
  activation or bias init, or ``k`` / ``aux_k`` larger than the number of latents."""
  m, s = config.model, config.sae
  if s.activation not in ACTIVATIONS:
    raise ValueError(f'Unknown sae.activation {s.activation!r}; choose one of {ACTIVATIONS}.')
  if s.bias_init not in BIAS_INITS:
    raise ValueError(f'Unknown sae.bias_init {s.bias_init!r}; choose one of {BIAS_INITS}.')
  if not 1 <= s.k <= m.latent_dim or not 1 <= s.aux_k <= m.latent_dim:
    raise ValueError(f'sae.k={s.k} and sae.aux_k={s.aux_k} must lie in [1, model.latent_dim={m.latent_dim}].')
  dim = int(np.prod(data_shape))
  return Model(dim, m.latent_dim, s.activation, s.k, s.aux_k, s.dead_steps, s.bandwidth, s.threshold_init,
               s.unit_norm_decoder, s.bias_init, tuple(s.get('matryoshka_prefixes', ())),
               int(s.get('resample_every', 0)))


def init(model: Model, key: jax.Array) -> dict[str, jax.Array]:
  """Decoder rows uniform on the unit sphere, ``W_enc = W_dec^T``, zero biases; ``log_threshold`` at
  ``log(sae.threshold_init)`` (jumprelu), ``threshold`` 0 (batchtopk), ``r_mag`` and ``b_mag`` 0 (gated)."""
  w_MxD = jax.random.normal(key, (model.num_latents, model.dim))
  w_MxD = w_MxD / jnp.linalg.norm(w_MxD, axis=1, keepdims=True)
  params = {'W_enc': w_MxD.T, 'b_enc': jnp.zeros(model.num_latents), 'W_dec': w_MxD, 'b_dec': jnp.zeros(model.dim)}
  if model.activation == 'jumprelu':
    params['log_threshold'] = jnp.full(model.num_latents, jnp.log(model.threshold_init))
  if model.activation == 'batchtopk':
    params['threshold'] = jnp.zeros(())
  if model.activation == 'gated':
    params.update(r_mag=jnp.zeros(model.num_latents), b_mag=jnp.zeros(model.num_latents))
  return params


def _rectangle(u: jax.Array) -> jax.Array:
  return (jnp.abs(u) < 0.5).astype(u.dtype)


def _sum_to(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``g`` summed down to the broadcast ``shape`` (the threshold's, e.g. ``1 x M``)."""
  g = jnp.sum(g, axis=tuple(range(g.ndim - len(shape))))
  return jnp.sum(g, axis=tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1), keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(pre_BxM: jax.Array, threshold_M: jax.Array, bandwidth: float) -> jax.Array:
  """``pre * H(pre - threshold)``; the gradient for ``pre`` is ``H(pre - threshold)``, for the threshold
  the pseudo-derivative ``-(threshold / bandwidth) K((pre - threshold) / bandwidth)`` with the rectangle
  kernel ``K`` (Rajamanoharan et al. 2024)."""
  return pre_BxM * (pre_BxM > threshold_M)


def _jumprelu_fwd(pre, threshold, bandwidth):
  return jumprelu(pre, threshold, bandwidth), (pre, threshold)


def _jumprelu_bwd(bandwidth, residuals, g):
  pre, threshold = residuals
  g_threshold = -(threshold / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
  return g * (pre > threshold), _sum_to(g_threshold, threshold.shape)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step(pre_BxM: jax.Array, threshold_M: jax.Array, bandwidth: float) -> jax.Array:
  """Heaviside ``H(pre - threshold)`` (float); no gradient for ``pre``, the pseudo-derivative
  ``-(1 / bandwidth) K((pre - threshold) / bandwidth)`` for the threshold (Rajamanoharan et al. 2024)."""
  return (pre_BxM > threshold_M).astype(pre_BxM.dtype)


def _step_fwd(pre, threshold, bandwidth):
  return step(pre, threshold, bandwidth), (pre, threshold)


def _step_bwd(bandwidth, residuals, g):
  pre, threshold = residuals
  g_threshold = -(1.0 / bandwidth) * _rectangle((pre - threshold) / bandwidth) * g
  return jnp.zeros_like(pre), _sum_to(g_threshold, threshold.shape)


step.defvjp(_step_fwd, _step_bwd)
step_fn = step  # the Heaviside, under a name that the training step's ``step`` argument does not shadow


def topk(pre_BxM: jax.Array, k: int) -> jax.Array:
  """The ``k`` largest entries of each row, ReLU'd, the others 0 (Gao et al. 2024)."""
  values_BxK, idx_BxK = jax.lax.top_k(pre_BxM, k)
  rows = jnp.arange(pre_BxM.shape[0])[:, None]
  return jnp.zeros_like(pre_BxM).at[rows, idx_BxK].set(jax.nn.relu(values_BxK))


def batch_topk(pre_BxM: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """``(z_BxM, smallest kept activation)``: the ``k * B`` largest ReLU'd entries of the whole batch, the
  others 0 (Bussmann et al. 2024)."""
  flat = jax.nn.relu(pre_BxM).reshape(-1)
  values, idx = jax.lax.top_k(flat, k * pre_BxM.shape[0])
  z = jnp.zeros_like(flat).at[idx].set(values).reshape(pre_BxM.shape)
  kept = values > 0
  smallest = jnp.min(jnp.where(kept, values, jnp.inf))
  return z, jnp.where(jnp.any(kept), smallest, 0.0)


def pre_activations(params, x_BxD: jax.Array) -> jax.Array:
  """``(x - b_dec) W_enc + b_enc``: ``B x M``."""
  return (x_BxD - params['b_dec'][None]) @ params['W_enc'] + params['b_enc'][None]


def activate(model: Model, params, pre_BxM: jax.Array, train: bool) -> jax.Array:
  """The sparse code ``z_BxM`` of pre-activations (batchtopk: over the batch when ``train``, else with the
  moving-average threshold)."""
  if model.activation == 'topk':
    return topk(pre_BxM, model.k)
  if model.activation == 'batchtopk':
    if train:
      return batch_topk(pre_BxM, model.k)[0]
    return jax.nn.relu(pre_BxM) * (pre_BxM > params['threshold'])
  if model.activation == 'jumprelu':
    return jumprelu(pre_BxM, jnp.exp(params['log_threshold'])[None], model.bandwidth)
  return jax.nn.relu(pre_BxM)


def encode(model: Model, params, x_BxD: jax.Array, train: bool = False) -> jax.Array:
  """The sparse code ``z_BxM`` of inputs: :func:`activate` of :func:`pre_activations`, or a Gated SAE's
  gated magnitudes (:func:`aelab.nn.sparse_coding.gated_code`)."""
  if model.activation == 'gated':
    return sparse_coding.gated_code(x_BxD - params['b_dec'][None], params['W_enc'], params['b_enc'],
                                    params['r_mag'], params['b_mag'])[0]
  return activate(model, params, pre_activations(params, x_BxD), train)


def decode(params, z_BxM: jax.Array) -> jax.Array:
  """``z W_dec + b_dec``: ``B x D``."""
  return z_BxM @ params['W_dec'] + params['b_dec'][None]


def geometric_median(x_BxD: jax.Array, num_steps: int = WEISZFELD_STEPS, eps: float = 1e-8) -> jax.Array:
  """The point minimising the summed Euclidean distance to the rows of ``x``: ``num_steps`` Weiszfeld
  iterations from the mean (Weiszfeld 1937). Shape ``D``."""

  def weiszfeld(y_D, _):
    w_B = 1.0 / jnp.maximum(jnp.linalg.norm(x_BxD - y_D[None], axis=1), eps)
    return jnp.sum(w_B[:, None] * x_BxD, axis=0) / jnp.sum(w_B), None

  return jax.lax.scan(weiszfeld, jnp.mean(x_BxD, axis=0), None, length=num_steps)[0]


def remove_parallel_gradient(grad_MxD: jax.Array, w_MxD: jax.Array) -> jax.Array:
  """The gradient of each unit decoder row without its component along the row: ``g - (g . w) w``."""
  return grad_MxD - jnp.sum(grad_MxD * w_MxD, axis=1, keepdims=True) * w_MxD


def unit_rows(w_MxD: jax.Array) -> jax.Array:
  """Rows scaled to unit Euclidean norm."""
  return w_MxD / jnp.maximum(jnp.linalg.norm(w_MxD, axis=1, keepdims=True), 1e-12)


def aux_loss(model: Model, params, pre_BxM: jax.Array, residual_BxD: jax.Array, dead_M: jax.Array) -> jax.Array:
  """AuxK (Gao et al. 2024): the residual (no gradient) reconstructed by the ``aux_k`` largest
  pre-activations among dead latents, ``sum ||e - e_hat||^2 / sum ||e - mean(e)||^2`` over the batch.
  0 when no latent is dead."""
  residual = jax.lax.stop_gradient(residual_BxD)
  z_aux = topk(jnp.where(dead_M[None], pre_BxM, 0.0), min(model.aux_k, model.num_latents))
  e_hat = z_aux @ params['W_dec']
  scale = jnp.maximum(jnp.sum(jnp.square(residual - jnp.mean(residual, axis=0, keepdims=True))), 1e-12)
  return jnp.where(jnp.any(dead_M), jnp.sum(jnp.square(residual - e_hat)) / scale, 0.0)


def sparsity_penalty(model: Model, params, pre_BxM, z_BxM, x_BxD, hp, step) -> tuple[jax.Array, dict]:
  """``(weighted penalty, metrics)`` of the activation: relu's L_p (``l1``, with the annealed ``p``), gated's
  L_p of ``ReLU(pi_gate)`` plus its auxiliary loss (``gate_aux``), jumprelu's L0 (``l0_penalty``), each
  coefficient times the warm-up factor (``sparsity_factor``); 0 for topk and batchtopk."""
  factor = sparse_coding.sparsity_warmup(step, hp['sparsity_warmup_steps'])
  norms = jnp.linalg.norm(params['W_dec'], axis=1)
  p = sparse_coding.annealed_p(step, hp['p_final'], hp['p_anneal_start'], hp['p_anneal_steps'])
  if model.activation == 'relu':
    l1 = jnp.mean(sparse_coding.lp_penalty(z_BxM, norms, p))
    return factor * hp['l1_weight'] * l1, {'l1': l1, 'p': p, 'sparsity_factor': factor}
  if model.activation == 'gated':
    l1 = jnp.mean(sparse_coding.lp_penalty(jax.nn.relu(pre_BxM), norms, p))
    gate_aux = jnp.mean(sparse_coding.gated_losses(pre_BxM, params['W_dec'], params['b_dec'], x_BxD)[1])
    return factor * hp['l1_weight'] * l1 + gate_aux, {'l1': l1, 'gate_aux': gate_aux, 'p': p,
                                                      'sparsity_factor': factor}
  if model.activation == 'jumprelu':
    l0 = jnp.mean(jnp.sum(step_fn(pre_BxM, jnp.exp(params['log_threshold'])[None], model.bandwidth), 1))
    return factor * hp['l0_weight'] * l0, {'l0_penalty': l0, 'sparsity_factor': factor}
  return jnp.zeros(()), {}


def make_loss(model: Model) -> Callable:
  """``loss(params, x_BxD, hp, dead_M, step) -> (scalar, (metrics, fired_M, smallest kept activation,
  squared error_B))``: the batch-mean ``||x - x_hat||^2`` (plus, Matryoshka, those of the inner
  dictionaries: ``matryoshka``), the activation's :func:`sparsity_penalty` and ``hp['aux_weight']`` AuxK."""

  def loss(params, x_BxD, hp, dead_M, step):
    pre = pre_activations(params, x_BxD)
    smallest = jnp.zeros(())
    if model.activation == 'batchtopk':
      z, smallest = batch_topk(pre, model.k)
    else:
      z = encode(model, params, x_BxD, train=True)
    residual = x_BxD - decode(params, z)
    sq_B = jnp.sum(jnp.square(residual), axis=1)
    recon = jnp.mean(sq_B)
    aux = aux_loss(model, params, pre, residual, dead_M)
    penalty, extra = sparsity_penalty(model, params, pre, z, x_BxD, hp, step)
    total = recon + hp['aux_weight'] * aux + penalty
    if model.matryoshka_prefixes:
      extra['matryoshka'] = jnp.sum(jnp.mean(sparse_coding.matryoshka_losses(
          z, params['W_dec'], params['b_dec'], x_BxD, model.matryoshka_prefixes), axis=1))
      total = total + extra['matryoshka']
    metrics = {'loss': total, 'recon': recon, 'aux': aux, 'l0': jnp.mean(jnp.sum(z > 0, axis=1)),
               'dead_fraction': jnp.mean(dead_M), **extra}
    return total, (metrics, jnp.any(z > 0, axis=0), smallest, sq_B)

  return loss


def initial_bias(model: Model, x_BxD: jax.Array) -> jax.Array:
  """``b_dec`` from the first batch (``sae.bias_init``)."""
  if model.bias_init == 'geometric_median':
    return geometric_median(x_BxD)
  if model.bias_init == 'mean':
    return jnp.mean(x_BxD, axis=0)
  return jnp.zeros(x_BxD.shape[1])


def resample(model: Model, tx: optax.GradientTransformation, key: jax.Array, state: dict, x_BxD: jax.Array,
             squared_error_B: jax.Array) -> dict:
  """``state`` after resampling (Bricken et al. 2023) at the steps ``step + 1`` that are multiples of
  ``sae.resample_every``: the latents dead there (not fired for ``sae.dead_steps`` steps) get directions
  from the batch (:func:`aelab.nn.sparse_coding.resample_dead`), their entries of the optimizer state
  (Adam's moments: every parameter-shaped tree of ``tx``'s state, ``optax.tree_utils.tree_map_params``)
  are set to 0 and their counters restart. Elsewhere the state is unchanged. Traceable."""
  opt = state['opt_state']
  due = (state['step'] % model.resample_every) == 0  # state['step'] is already the next step
  dead_M = (opt['steps_since_fired'] >= model.dead_steps) & due
  params = sparse_coding.resample_dead(key, state['params'], x_BxD, squared_error_B, dead_M)
  mask = sparse_coding.resampled_mask(params, dead_M)
  tx_state = optax.tree_utils.tree_map_params(tx, lambda v, m: jnp.where(m, jnp.zeros_like(v), v), opt['tx'], mask)
  counter = jnp.where(dead_M, 0, opt['steps_since_fired'])
  opt = {**opt, 'tx': tx_state, 'steps_since_fired': counter, 'resampled': opt['resampled'] + jnp.sum(dead_M)}
  return {**state, 'params': params, 'opt_state': opt}


def make_update(model: Model, tx: optax.GradientTransformation):
  """``(init_opt_state(params), train_step(state, x_BxD, key, hp))``: one gradient step of :func:`make_loss`
  with ``tx``, the decoder constraint, dead-latent counting, (batchtopk) the threshold's moving average and
  (``sae.resample_every``) :func:`resample`.

  The optimizer state is ``{'tx': tx's state, 'steps_since_fired': int32 M}`` (and ``'resampled'``, the
  number of latents resampled so far); a latent is dead for AuxK when it has not fired for
  ``sae.dead_steps`` steps. Metrics per step: ``loss``, ``recon``, ``aux``, ``l0`` (active latents per
  example), ``dead_fraction``, and those of :func:`sparsity_penalty` and ``matryoshka``.
  """
  loss_fn = make_loss(model)

  def init_opt_state(params):
    opt = {'tx': tx.init(params), 'steps_since_fired': jnp.zeros(model.num_latents, jnp.int32)}
    return {**opt, 'resampled': jnp.zeros((), jnp.int32)} if model.resample_every else opt

  def train_step(state, x_BxD, key, hp):
    params, opt = state['params'], state['opt_state']
    params = {**params, 'b_dec': jnp.where(state['step'] == 0, initial_bias(model, x_BxD), params['b_dec'])}
    dead = opt['steps_since_fired'] >= model.dead_steps
    grads, (metrics, fired, smallest, sq_B) = jax.grad(loss_fn, has_aux=True)(params, x_BxD, hp, dead,
                                                                              state['step'])
    if model.unit_norm_decoder:
      grads = {**grads, 'W_dec': remove_parallel_gradient(grads['W_dec'], params['W_dec'])}
    updates, tx_state = tx.update(grads, opt['tx'], params)
    new = optax.apply_updates(params, updates)
    if model.unit_norm_decoder:
      new['W_dec'] = unit_rows(new['W_dec'])
    if model.activation == 'batchtopk':
      first = state['step'] == 0
      new['threshold'] = jnp.where(first, smallest,
                                   BATCHTOPK_MOMENTUM * params['threshold'] + (1 - BATCHTOPK_MOMENTUM) * smallest)
    counter = jnp.where(fired, 0, opt['steps_since_fired'] + 1)
    out = {'step': state['step'] + 1, 'params': new, 'opt_state': {**opt, 'tx': tx_state, 'steps_since_fired': counter}}
    if model.resample_every:
      out = resample(model, tx, key, out, x_BxD, sq_B)
      metrics = {**metrics, 'resampled': out['opt_state']['resampled']}
    return out, metrics

  return init_opt_state, train_step


def make_eval(model: Model) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> per-example metrics``: ``recon`` (squared error summed over
  features), ``recon_mse`` (per feature) and ``l0`` (latents active)."""

  def eval_fn(params, x_BxD, key, hp):
    z = encode(model, params, x_BxD)
    sq = jnp.square(x_BxD - decode(params, z))
    return {'recon': jnp.sum(sq, axis=1), 'recon_mse': jnp.mean(sq, axis=1), 'l0': jnp.sum(z > 0, axis=1)}

  return eval_fn


def make_split_eval(model: Model, true_directions_NxD: np.ndarray | None) -> Callable:
  """``split_eval(params, x_MxD, hp) -> {name: scalar}`` on a whole split (memory ``M x latents``):
  ``dead_fraction`` (latents that fire on no example of the split), ``explained_variance`` (``1 - sum ||x -
  x_hat||^2 / sum ||x - mean(x)||^2``), ``nmse`` (``sum ||x - x_hat||^2 / sum ||x||^2``), and with true
  directions ``mmcs`` (:func:`aelab.data.superposition.mean_max_cosine` of them and the decoder rows); the
  feature density of the split (:func:`aelab.nn.sparse_coding.density_stats`: ``log10_density_qNN``
  quantiles of ``log10`` firing frequency per latent, ``dense_fraction``)."""

  def split_eval(params, x_MxD, hp):
    del hp
    z = encode(model, params, x_MxD)
    residual_sq = jnp.sum(jnp.square(x_MxD - decode(params, z)))
    variance = jnp.sum(jnp.square(x_MxD - jnp.mean(x_MxD, axis=0, keepdims=True)))
    out = {'dead_fraction': jnp.mean(~jnp.any(z > 0, axis=0)), 'explained_variance': 1.0 - residual_sq / variance,
           'nmse': residual_sq / jnp.sum(jnp.square(x_MxD)),
           **sparse_coding.density_stats(sparse_coding.firing_frequencies(z))}
    if true_directions_NxD is not None:
      out['mmcs'] = superposition.mean_max_cosine(true_directions_NxD, params['W_dec'])
    return out

  return split_eval


def true_directions(config: ml_collections.ConfigDict) -> np.ndarray | None:
  """The ground-truth feature directions of ``config.data`` (superposition data), else None."""
  if config.data.name != 'superposition':
    return None
  return superposition.directions(superposition.spec(config.data.get('superposition')))


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The sparse autoencoder's ``Family`` (see ``aelab/models/family.py``): its own update (decoder
  constraint, dead latents) and the whole-split ``split_eval``."""
  model = build(config, data_shape)
  encode_fn = functools.partial(encode, model)
  return Family(model=model, init=lambda key, x_BxD: init(model, key), eval=make_eval(model),
                reconstruct=lambda params, x_BxD, key, hp: (x_BxD, decode(params, encode_fn(params, x_BxD))),
                encode=encode_fn, decode=decode, make_update=lambda tx: make_update(model, tx),
                split_eval=make_split_eval(model, true_directions(config)))
