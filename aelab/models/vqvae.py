"""Vector-quantised autoencoder, VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, Neural Discrete
Representation Learning).

The encoder's output is a set of ``N`` vectors ``z_e`` of ``D = vqvae.code_dim`` dimensions: one per spatial
position of a convolutional map (``vqvae.code_layout='spatial'``, ``model.net=conv``: a ``H/2**L x W/2**L``
grid), or ``model.latent_dim / vqvae.code_dim`` of them cut from the encoder's ``latent_dim`` outputs
(``'vectors'``, MLP or conv nets: the same nets as ``model.name=ae``). Each vector is replaced by its
nearest entry ``e_k`` of a codebook of ``vqvae.codebook_size`` x ``D`` (Eq. 1-2), the decoder sees
``z_q = z_e + sg[e - z_e]`` (the straight-through gradient, Sec. 3.2), and the loss is (Eq. 3)

  recon(x, g(z_q)) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2,

with ``beta = vqvae.commitment_weight`` (a traced hyperparameter) and both distances averaged over the
``N x D`` code elements (as Sonnet's ``VectorQuantizer`` does; ``recon`` is ``model.likelihood``'s loss).
With ``vqvae.codebook_ema`` = decay ``gamma > 0`` the codebook term is dropped and the codebook follows
exponential moving averages of the assignment counts ``N_k`` and of the sums ``m_k`` of the vectors
assigned to each code, ``e_k = m_k / N_k`` with Laplace-smoothed counts (App. A.1; Sonnet's
``VectorQuantizerEMA``). Dead-code restarts (``vqvae.dead_code_steps`` = ``s > 0``): a code unused for ``s``
train steps is set to a random encoder output of the batch (Dhariwal et al. 2020, Jukebox, Sec. 3.4 restart
codes the same way); every code starts "dead", so the first step initialises the codebook from data.

Parameters: ``{'params': {'encoder', 'decoder', 'codebook'}}``; the optimizer state carries the EMA and
usage statistics (``'vq'``). The family has no prior over codes (the paper fits a PixelCNN afterwards): its
runs draw reconstructions, interpolations and traversals; samples come from a PixelCNN fitted on the
training codes after training (``python -m aelab.sample --sampler=pixelcnn``, ``aelab/samplers.py``).
"""
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.nn import nets
from aelab.models import common
from aelab.errors import check, check_choice
from aelab.models.family import COMMON_HYPERPARAMS, Family

SECTION = 'vqvae'
CONFIG = {
    'code_layout': ('vectors', "'vectors' (latent_dim / code_dim vectors, MLP or conv nets) or 'spatial' (one "
                    'vector per position of the conv map)'),
    'code_dim': (8, 'dimension of each code vector'),
    'codebook_size': (128, 'number of codebook vectors K'),
    'commitment_weight': (0.25, 'beta of the commitment loss (van den Oord et al. 2017, Eq. 3)'),
    'codebook_ema': (0.99, 'decay of the codebook\'s EMA update (0: learned by gradient)'),
    'dead_code_steps': (100, 'steps unused before a code restarts at an encoder output (0: never)'),
}
HYPERPARAMS = {**COMMON_HYPERPARAMS, 'commitment_weight': 'vqvae.commitment_weight'}
LAYOUTS = ('vectors', 'spatial')
LAPLACE_EPS = 1e-5


class Model(nn.Module):
  """Encoder to ``N x code_dim`` vectors, a ``codebook_size x code_dim`` codebook, decoder from ``N x
  code_dim`` vectors. ``encode(x_BxD) -> z_e_BxNxZ``, ``decode(z_BxNxZ) -> out_BxD``."""
  data_shape: Sequence[int]
  hidden: tuple[int, ...]
  latent_dim: int
  code_dim: int
  codebook_size: int
  layout: str = 'vectors'
  activation: str = 'relu'
  output_activation: str = 'identity'
  net: str = 'mlp'
  conv_channels: tuple[int, ...] = (32, 64)
  dtype: Any = jnp.float32  # of the nets' computation (model.dtype); parameters, codes and outputs are float32

  def setup(self):
    if self.layout == 'spatial':
      self.encoder = nets.ConvMapEncoder(tuple(self.data_shape), self.conv_channels, self.code_dim, self.activation,
                                         self.dtype)
      self.decoder = nets.ConvMapDecoder(tuple(self.data_shape), self.conv_channels, self.activation,
                                         self.output_activation, self.dtype)
    else:
      self.encoder = nets.make_encoder(self.net, self.data_shape, self.hidden, self.latent_dim, self.activation,
                                       'identity', self.conv_channels, self.dtype)
      self.decoder = nets.make_decoder(self.net, self.data_shape, self.hidden[::-1], self.activation,
                                       self.output_activation, self.conv_channels, self.dtype)
    limit = math.sqrt(3.0 / self.code_dim)  # variance scaling, uniform (Sonnet's default)
    self.codebook = self.param('codebook', nn.initializers.uniform(2 * limit), (self.codebook_size, self.code_dim))

  def grid(self) -> tuple[int, ...]:
    """The shape the decoder takes the ``N`` code vectors in: ``(h, w)`` or ``(N,)``."""
    if self.layout == 'spatial':
      factor = 2 ** len(self.conv_channels)
      return (self.data_shape[0] // factor, self.data_shape[1] // factor)
    return (self.latent_dim // self.code_dim,)

  def encode(self, x_BxD: jax.Array) -> jax.Array:
    z = self.encoder(x_BxD).astype(jnp.float32)
    return z.reshape(z.shape[0], -1, self.code_dim)

  def decode(self, z_BxNxZ: jax.Array) -> jax.Array:
    z = z_BxNxZ.reshape(z_BxNxZ.shape[0], *self.grid(), self.code_dim)
    return self.decoder(z if self.layout == 'spatial' else z.reshape(z.shape[0], -1))

  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    return self.decode(self.encode(x_BxD))


def build(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Model:
  """The model of ``config.model`` and ``config.vqvae`` for examples of ``data_shape``. Raises ConfigError (a
  ValueError) for a layout the nets cannot give (``spatial`` without conv nets, ``latent_dim`` not a multiple
  of ``code_dim``)."""
  m, q = config.model, config.vqvae
  check_layout(config)
  return Model(common.as_shape(m, data_shape), tuple(m.hidden), m.latent_dim, q.code_dim, q.codebook_size,
               q.code_layout, m.activation, common.output_activation(m), m.net, tuple(m.conv_channels),
               common.compute_dtype(m))


def check_layout(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (a ValueError) unless ``vqvae.code_layout`` fits ``model.net`` and the code sizes."""
  m, q = config.model, config.vqvae
  check_choice(q.code_layout, LAYOUTS, 'vqvae.code_layout')
  check(q.code_layout != 'spatial' or m.net == 'conv', 'vqvae.code_layout=spatial (a code vector per position '
        'of a conv map) needs model.net=conv; use vqvae.code_layout=vectors with MLP nets.')
  check(q.code_layout != 'vectors' or m.latent_dim % q.code_dim == 0, f'vqvae.code_layout=vectors cuts the '
        f'latent_dim={m.latent_dim} encoder outputs into vectors of vqvae.code_dim={q.code_dim}: make '
        'model.latent_dim a multiple of vqvae.code_dim.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.vqvae`` and its fit to ``config.model``. Raises ConfigError naming the field."""
  q = config.vqvae
  check(isinstance(q.code_dim, int) and q.code_dim >= 1, f'vqvae.code_dim={q.code_dim} must be an integer >= 1.')
  check(isinstance(q.codebook_size, int) and q.codebook_size >= 2,
        f'vqvae.codebook_size={q.codebook_size} must be an integer >= 2.')
  check(q.commitment_weight >= 0, f'vqvae.commitment_weight={q.commitment_weight} (beta) must be >= 0.')
  check(0.0 <= q.codebook_ema < 1.0, f'vqvae.codebook_ema={q.codebook_ema} (EMA decay) must lie in [0, 1); '
        '0 learns the codebook by gradient instead.')
  check(isinstance(q.dead_code_steps, int) and q.dead_code_steps >= 0,
        f'vqvae.dead_code_steps={q.dead_code_steps} must be an integer >= 0 (0: no restarts).')
  check_layout(config)


# ---- Quantization, the codebook's EMA update and dead-code restarts: pure functions ----


def nearest_code(z_MxZ: jax.Array, codebook_KxZ: jax.Array) -> jax.Array:
  """Index of the nearest codebook entry (squared Euclidean distance) of each row: int32, shape ``M``
  (van den Oord et al. 2017, Eq. 1). Works on any leading shape ``... x Z``."""
  flat = z_MxZ.reshape(-1, z_MxZ.shape[-1])
  dist = (jnp.sum(jnp.square(flat), axis=-1, keepdims=True) - 2.0 * flat @ codebook_KxZ.T
          + jnp.sum(jnp.square(codebook_KxZ), axis=-1)[None])
  return jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(z_MxZ.shape[:-1])


def quantize(z_e: jax.Array, codebook_KxZ: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(z_q, e, indices)`` for encoder outputs ``z_e`` (``... x Z``): ``e = codebook[indices]`` the nearest
  entries and ``z_q = z_e + sg[e - z_e]``, equal to ``e`` with the gradient of ``z_e`` (straight-through,
  van den Oord et al. 2017, Sec. 3.2)."""
  indices = nearest_code(z_e, codebook_KxZ)
  e = codebook_KxZ[indices]
  return z_e + jax.lax.stop_gradient(e - z_e), e, indices


def perplexity(counts_K: jax.Array) -> jax.Array:
  """``exp(H(p))`` of the code usage ``p = counts / sum(counts)``, in [1, K]: K when every code is used
  equally, 1 when one code takes everything (0 log 0 = 0)."""
  p = counts_K / jnp.maximum(jnp.sum(counts_K), 1e-12)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def init_codebook_state(codebook_KxZ: jax.Array, dead_code_steps: int) -> dict[str, jax.Array]:
  """The codebook statistics: EMA ``cluster_size`` (``K``, starts at 1 per code) and ``embed_sum``
  (``K x Z``, starts at the codebook, so an unused code stays where it is), and ``unused_steps`` (``K``,
  int32; starts at ``dead_code_steps`` so that the first step restarts every code the batch does not use)."""
  k = codebook_KxZ.shape[0]
  return {'cluster_size': jnp.ones((k,), jnp.float32), 'embed_sum': codebook_KxZ.astype(jnp.float32),
          'unused_steps': jnp.full((k,), dead_code_steps, jnp.int32)}


def ema_update(state: dict, z_MxZ: jax.Array, one_hot_MxK: jax.Array, decay: float,
               eps: float = LAPLACE_EPS) -> tuple[jax.Array, dict]:
  """``(codebook_KxZ, state)`` after one EMA step (van den Oord et al. 2017, App. A.1, Eq. 6-8):
  ``N_k <- decay N_k + (1 - decay) n_k``, ``m_k <- decay m_k + (1 - decay) sum_{i in k} z_i``, ``e_k = m_k /
  N~_k`` with Laplace-smoothed counts ``N~_k = (N_k + eps) / (n + K eps) n``, ``n = sum_k N_k`` (Sonnet's
  ``VectorQuantizerEMA``). ``z_MxZ``: encoder outputs (no gradient flows), ``one_hot_MxK`` their codes."""
  k = one_hot_MxK.shape[1]
  cluster_size = decay * state['cluster_size'] + (1.0 - decay) * jnp.sum(one_hot_MxK, axis=0)
  embed_sum = decay * state['embed_sum'] + (1.0 - decay) * (one_hot_MxK.T @ z_MxZ)
  n = jnp.sum(cluster_size)
  smoothed = (cluster_size + eps) / (n + k * eps) * n
  return embed_sum / smoothed[:, None], {**state, 'cluster_size': cluster_size, 'embed_sum': embed_sum}


def restart_dead_codes(key: jax.Array, codebook_KxZ: jax.Array, state: dict, z_MxZ: jax.Array,
                       used_K: jax.Array, dead_code_steps: int) -> tuple[jax.Array, dict, jax.Array]:
  """``(codebook, state, num_restarted)``: ``unused_steps`` counts the steps since each code was last
  used (``used_K``: its count in this batch); a code unused for ``dead_code_steps`` steps is set to a
  random row of ``z_MxZ`` (drawn without replacement when ``M >= K``), its EMA count to 1 and its sum to
  the new vector (Dhariwal et al. 2020, Jukebox, Sec. 3.4; Zeghidour et al. 2021, SoundStream)."""
  k, m = codebook_KxZ.shape[0], z_MxZ.shape[0]
  unused = jnp.where(used_K > 0, 0, state['unused_steps'] + 1)
  dead = unused >= dead_code_steps
  rows = jax.random.choice(key, m, (k,), replace=m < k)
  fresh = z_MxZ[rows]
  codebook = jnp.where(dead[:, None], fresh, codebook_KxZ)
  state = {'cluster_size': jnp.where(dead, 1.0, state['cluster_size']),
           'embed_sum': jnp.where(dead[:, None], fresh, state['embed_sum']),
           'unused_steps': jnp.where(dead, 0, unused)}
  return codebook, state, jnp.sum(dead)


# ---- The family's functions ----


def make_forward(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``forward(params, x_BxD) -> (out_BxD, z_e_BxNxZ, e_BxNxZ, indices_BxN)``: encode, quantize, decode."""

  def forward(params, x_BxD):
    z_e = model.apply(params, x_BxD, method=Model.encode)
    z_q, e, indices = quantize(z_e, params['params']['codebook'])
    return model.apply(params, z_q, method=Model.decode), z_e, e, indices

  return forward


def make_objective(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``objective(params, x_BxD, key, hp) -> (loss, (metrics, (z_e, indices)))``: the loss of Eq. 3 (module
  docstring), without the codebook term when the codebook follows EMAs. Metrics: ``loss``, ``recon``
  (units of ``model.likelihood``), ``commitment`` and ``codebook_loss`` (unweighted, per code element)."""
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)
  forward = make_forward(model, config)
  ema = config.vqvae.codebook_ema > 0

  def objective(params, x_BxD, key, hp):
    out, z_e, e, indices = forward(params, corrupt(key, x_BxD, hp))
    recon = jnp.mean(recon_loss(out, x_BxD))
    commitment = jnp.mean(jnp.square(z_e - jax.lax.stop_gradient(e)))
    codebook_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(z_e) - e))
    loss = recon + hp['commitment_weight'] * commitment + (0.0 if ema else codebook_loss)
    metrics = {'loss': loss, 'recon': recon, 'commitment': commitment, 'codebook_loss': codebook_loss}
    return loss, (metrics, (jax.lax.stop_gradient(z_e), indices))

  return objective


def make_update(model: Model, config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
  """``(init_opt_state(params), train_step)``: a gradient step of :func:`make_objective` with ``tx``, then
  the codebook's EMA update (``vqvae.codebook_ema > 0``) and dead-code restarts (``vqvae.dead_code_steps >
  0``). The optimizer state is ``{'tx': ..., 'vq': init_codebook_state(...)}``. Train metrics add
  ``perplexity`` (of the batch's codes) and ``codes_restarted``."""
  m = config.vqvae
  objective = make_objective(model, config)

  def init_opt_state(params):
    return {'tx': tx.init(params), 'vq': init_codebook_state(params['params']['codebook'], m.dead_code_steps)}

  def train_step(state, x_BxD, key, hp):
    loss_key, restart_key = jax.random.split(key)
    params, opt = state['params'], state['opt_state']
    grads, (metrics, (z_e, indices)) = jax.grad(objective, has_aux=True)(params, x_BxD, loss_key, hp)
    updates, tx_state = tx.update(grads, opt['tx'], params)
    params = optax.apply_updates(params, updates)
    z_MxZ = z_e.reshape(-1, m.code_dim)
    one_hot_MxK = jax.nn.one_hot(indices.reshape(-1), m.codebook_size, dtype=z_MxZ.dtype)
    counts = jnp.sum(one_hot_MxK, axis=0)
    codebook, vq = params['params']['codebook'], opt['vq']
    if m.codebook_ema > 0:
      codebook, vq = ema_update(vq, z_MxZ, one_hot_MxK, m.codebook_ema)
    restarted = jnp.zeros((), jnp.int32)
    if m.dead_code_steps > 0:
      codebook, vq, restarted = restart_dead_codes(restart_key, codebook, vq, z_MxZ, counts, m.dead_code_steps)
    params = {**params, 'params': {**params['params'], 'codebook': codebook}}
    metrics = {**metrics, 'perplexity': perplexity(counts), 'codes_restarted': restarted.astype(jnp.float32)}
    return {'step': state['step'] + 1, 'params': params, 'opt_state': {'tx': tx_state, 'vq': vq}}, metrics

  return init_opt_state, train_step


def make_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``eval_fn(params, x_BxD, key, hp) -> per-example metrics`` (shape ``B``): ``recon`` (units of
  ``model.likelihood``), ``recon_mse`` (per pixel), ``recon_bce`` (Bernoulli, nats per example) and
  ``commitment`` (``||z_e - e||^2`` per code element, the quantization error)."""
  recon_loss = common.reconstruction_loss(config.model)
  corrupt = common.corrupt_fn(config)
  forward = make_forward(model, config)

  def eval_fn(params, x_BxD, key, hp):
    out, z_e, e, _ = forward(params, corrupt(key, x_BxD, hp))
    metrics = {'recon': recon_loss(out, x_BxD), 'recon_mse': common.recon_mse(config.model, out, x_BxD),
               'commitment': jnp.mean(jnp.square(z_e - e), axis=(1, 2))}
    if config.model.likelihood == 'bernoulli':
      metrics['recon_bce'] = metrics['recon']
    return metrics

  return eval_fn


def make_split_eval(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``split_eval(params, x_MxD, hp) -> {'codebook_perplexity', 'codebook_usage'}`` over a whole split:
  ``exp`` of the entropy of the codes' frequencies over all ``M x N`` code vectors (:func:`perplexity`,
  in [1, K]) and the fraction of the ``K`` codes used at least once. Batches of ``train.eval_batch_size``."""
  encode = make_encode_indices(model)
  k, batch_size = config.vqvae.codebook_size, config.train.eval_batch_size

  def split_eval(params, x_MxD, hp):
    num = x_MxD.shape[0]
    bs = min(batch_size, num)
    num_batches = -(-num // bs)
    x = jnp.pad(x_MxD, ((0, num_batches * bs - num), (0, 0))).reshape(num_batches, bs, -1)
    valid = (jnp.arange(num_batches * bs) < num).reshape(num_batches, bs)

    def batch_counts(args):
      x_BxD, valid_B = args
      one_hot = jax.nn.one_hot(encode(params, x_BxD), k, dtype=jnp.float32)  # B x N x K
      return jnp.sum(jnp.where(valid_B[:, None, None], one_hot, 0.0), axis=(0, 1))

    counts = jnp.sum(jax.lax.map(batch_counts, (x, valid)), axis=0)
    return {'codebook_perplexity': perplexity(counts), 'codebook_usage': jnp.mean(counts > 0)}

  return split_eval


def make_encode_indices(model: Model) -> Callable:
  """``encode_indices(params, x_BxD) -> B x N`` int32: the discrete code of each example."""
  return lambda params, x_BxD: nearest_code(model.apply(params, x_BxD, method=Model.encode),
                                            params['params']['codebook'])


def make_reconstruct(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``: the (corrupted) input and the mean of the
  decoded quantized code."""
  corrupt = common.corrupt_fn(config)
  forward = make_forward(model, config)

  def reconstruct(params, x_BxD, key, hp):
    x_tilde = corrupt(key, x_BxD, hp)
    return x_tilde, common.mean_of(config.model, forward(params, x_tilde)[0])

  return reconstruct


def make_encode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``encode(params, x_BxD) -> z_BxZ``: the quantized code ``e`` flattened (``Z = N x code_dim``)."""

  def encode(params, x_BxD):
    z_e = model.apply(params, x_BxD, method=Model.encode)
    return quantize(z_e, params['params']['codebook'])[1].reshape(x_BxD.shape[0], -1)

  return encode


def make_decode(model: Model, config: ml_collections.ConfigDict) -> Callable:
  """``decode(params, z_BxZ) -> x_BxD``: the reconstruction mean of flattened codes (quantized or not)."""

  def decode(params, z_BxZ):
    out = model.apply(params, z_BxZ.reshape(z_BxZ.shape[0], -1, model.code_dim), method=Model.decode)
    return common.mean_of(config.model, out)

  return decode


def family(config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> Family:
  """The VQ-VAE's ``Family`` (see ``aelab/models/family.py``): its own update (gradient step, codebook EMA,
  restarts) and the codebook's usage over a split; no prior, so no samples."""
  model = build(config, data_shape)
  return Family(model=model, init=model.init, eval=make_eval(model, config),
                reconstruct=make_reconstruct(model, config), encode=make_encode(model, config),
                decode=make_decode(model, config), make_update=lambda tx: make_update(model, config, tx),
                split_eval=make_split_eval(model, config))
