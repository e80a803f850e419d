"""Pieces shared by the model families: likelihoods, code penalties (incl. the contractive penalty),
reconstruction metrics, the data shape a model is built for."""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from aelab.nn import corruption, losses, nets

LIKELIHOODS = ('bernoulli', 'gaussian', 'mse')
PENALTIES = ('none', 'l1', 'kl_sparsity', 'contractive')

Hyperparams = dict[str, jax.Array]


def output_activation(model_config: ml_collections.ConfigDict) -> str:
  """Decoder output activation: logits (identity) for Bernoulli, else ``model.output_activation``."""
  return 'identity' if model_config.likelihood == 'bernoulli' else model_config.output_activation


def reconstruction_loss(model_config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Per-example ``loss(decoder_out_BxD, x_BxD) -> B`` for ``model.likelihood``.

  ``bernoulli``: cross-entropy with logits, nats per example. ``gaussian``: ``-log N(x; mean, std^2)``
  with fixed ``model.likelihood_std``, nats per example. ``mse``: mean squared error per pixel.
  """
  name = model_config.likelihood
  if name == 'bernoulli':
    return losses.bce_with_logits
  if name == 'gaussian':
    log_var = 2.0 * jnp.log(model_config.likelihood_std)
    return lambda out, x: losses.gaussian_nll(out, x, log_var)
  if name == 'mse':
    return losses.mse
  raise ValueError(f'Unknown model.likelihood {name!r}; choose one of {LIKELIHOODS}.')


def mean_of(model_config: ml_collections.ConfigDict, out_BxD: jax.Array) -> jax.Array:
  """The reconstruction ``E[x|z]`` from the decoder output (sigmoid of Bernoulli logits)."""
  return jax.nn.sigmoid(out_BxD) if model_config.likelihood == 'bernoulli' else out_BxD


def recon_mse(model_config: ml_collections.ConfigDict, out_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
  """Squared error of the reconstruction mean against ``x``, per pixel: shape ``B``."""
  return losses.mse(mean_of(model_config, out_BxD), x_BxD)


def penalty(name: str) -> Callable[[jax.Array, Hyperparams], jax.Array]:
  """Code penalty ``fn(code_BxZ, hp) -> scalar`` (unweighted; the objective multiplies by
  ``hp['penalty_weight']``). ``l1``: batch mean of ``sum_j |z_j|``; ``kl_sparsity``: KL to
  ``hp['sparsity_target']`` of the batch-mean activations."""
  if name == 'none':
    return lambda code, hp: jnp.zeros(())
  if name == 'l1':
    return lambda code, hp: jnp.mean(losses.l1_activity(code))
  if name == 'kl_sparsity':
    return lambda code, hp: losses.kl_sparsity(code, hp['sparsity_target'])
  if name == 'contractive':
    raise ValueError('penalty.name=contractive needs the encoder and its input: use make_penalty.')
  raise ValueError(f'Unknown penalty.name {name!r}; choose one of {PENALTIES}.')


def with_penalty(config: ml_collections.ConfigDict, metrics: dict, value: jax.Array) -> dict:
  """Adds the unweighted penalty to ``metrics`` when the config has one."""
  return {**metrics, 'penalty': value} if config.penalty.name != 'none' else metrics


def corrupt_fn(config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array, Hyperparams], jax.Array]:
  """``fn(key, x, hp) -> x_tilde`` for ``config.corruption.name``."""
  return corruption.get(config.corruption.name, clip=config.corruption.clip)


def code_stats(code_BxZ: jax.Array) -> dict[str, jax.Array]:
  """Per-example code statistics: mean absolute activation and fraction of near-zero units (L0)."""
  return {
      'code_mean_abs': jnp.mean(jnp.abs(code_BxZ), axis=-1),
      'code_frac_zero': jnp.mean(jnp.abs(code_BxZ) < 1e-3, axis=-1),
  }


DTYPES = ('float32', 'bfloat16')


def compute_dtype(model_config: ml_collections.ConfigDict) -> jnp.dtype:
  """The dtype the nets compute in, ``model.dtype`` (``'float32'``, the default, or ``'bfloat16'``: matmuls and
  activations in bfloat16 with float32 parameters, net outputs and losses). Raises ValueError for another."""
  name = model_config.get('dtype') or 'float32'
  if name not in DTYPES:
    raise ValueError(f'model.dtype={name!r} is not one of {DTYPES}.')
  return jnp.dtype(name)


def as_shape(model_config: ml_collections.ConfigDict, data_shape: int | Sequence[int]) -> tuple[int, ...]:
  """The shape of one example: ``(H, W, C)`` for images, ``(D,)`` for features; an int ``D`` is ``(D,)``.
  Raises ValueError when ``model.net=conv`` and the shape is not an image it can take."""
  shape = (int(data_shape),) if isinstance(data_shape, int) else tuple(int(d) for d in data_shape)
  if model_config.net == 'conv':
    nets.check_conv_shape(shape, len(model_config.conv_channels))
  return shape


def jacobian_frobenius_sq(encode: Callable[[jax.Array], jax.Array], x_BxD: jax.Array) -> jax.Array:
  """``||J_f(x)||_F^2`` per example (shape ``B``) for any encoder ``f: x_BxD -> z_BxZ`` acting row-wise.

  Exact, not a stochastic estimate: ``Z`` reverse-mode products ``e_k^T J`` (``jax.vjp``) when ``Z <= D``,
  otherwise ``D`` forward-mode products ``J e_i`` (``jax.jvp``). Rows of the batch must not interact
  (no batch norm), so one product with a basis vector broadcast over the batch gives every example's row.
  Source: Rifai et al. 2011 (Contractive Auto-Encoders), Eq. 2.
  """
  z, vjp = jax.vjp(encode, x_BxD)
  num_out, num_in = z.shape[-1], x_BxD.shape[-1]
  if num_out <= num_in:
    basis = jnp.broadcast_to(jnp.eye(num_out, dtype=z.dtype)[:, None, :], (num_out, *z.shape))
    rows_ZxBxD = jax.vmap(lambda v: vjp(v)[0])(basis)
    return jnp.sum(jnp.square(rows_ZxBxD), axis=(0, 2))
  basis = jnp.broadcast_to(jnp.eye(num_in, dtype=x_BxD.dtype)[:, None, :], (num_in, *x_BxD.shape))
  cols_DxBxZ = jax.vmap(lambda v: jax.jvp(encode, (x_BxD,), (v,))[1])(basis)
  return jnp.sum(jnp.square(cols_DxBxZ), axis=(0, 2))


def contractive_sigmoid_mlp(kernels: Sequence[jax.Array], biases: Sequence[jax.Array], x_BxD: jax.Array) -> jax.Array:
  """``||J_f(x)||_F^2`` per example (shape ``B``) of a sigmoid MLP ``h_l = sigmoid(h_{l-1} W_l + b_l)``.

  Closed form with ``sigmoid' = h (1 - h)``; for one layer it is Rifai et al. 2011, Eq. 4:
  ``sum_j (h_j (1 - h_j))^2 sum_i W_ij^2``. Deeper encoders chain the layer Jacobians explicitly.
  """
  if len(kernels) == 1:
    h = jax.nn.sigmoid(x_BxD @ kernels[0] + biases[0][None])
    return jnp.sum(jnp.square(h * (1.0 - h)) * jnp.sum(jnp.square(kernels[0]), axis=0)[None], axis=-1)
  h, jac_BxHxD = x_BxD, None
  for kernel, bias in zip(kernels, biases):
    h = jax.nn.sigmoid(h @ kernel + bias[None])
    layer = kernel.T[None] if jac_BxHxD is None else jnp.einsum('ih,bid->bhd', kernel, jac_BxHxD)
    jac_BxHxD = (h * (1.0 - h))[:, :, None] * layer
  return jnp.sum(jnp.square(jac_BxHxD), axis=(1, 2))


def _sigmoid_mlp_layers(params) -> tuple[list[jax.Array], list[jax.Array]]:
  """Kernels and biases of an ``ae`` model's MLP encoder, in layer order."""
  mlp = params['params']['encoder']['mlp']
  names = sorted(mlp, key=lambda n: int(n.split('_')[1]))
  return [mlp[n]['kernel'] for n in names], [mlp[n]['bias'] for n in names]


def make_penalty(config: ml_collections.ConfigDict, encode: Callable) -> Callable:
  """``fn(params, x_tilde_BxD, code_BxZ, hp) -> scalar`` (unweighted) for ``config.penalty.name``.

  ``encode(params, x_BxD) -> code_BxZ``. ``contractive``: the batch mean of ``||J_f(x)||_F^2``, in closed
  form for an all-sigmoid MLP encoder (:func:`contractive_sigmoid_mlp`), otherwise exactly with
  ``jax.vjp`` / ``jax.jvp`` (:func:`jacobian_frobenius_sq`). Others: :func:`penalty`.
  """
  m = config.model
  if config.penalty.name != 'contractive':
    code_penalty = penalty(config.penalty.name)
    return lambda params, x, code, hp: code_penalty(code, hp)
  if m.net == 'mlp' and m.activation == 'sigmoid' and m.code_activation == 'sigmoid':
    return lambda params, x, code, hp: jnp.mean(contractive_sigmoid_mlp(*_sigmoid_mlp_layers(params), x))
  return lambda params, x, code, hp: jnp.mean(jacobian_frobenius_sq(lambda v: encode(params, v), x))


def reconstruct_through_codes(config: ml_collections.ConfigDict, encode: Callable, decode: Callable) -> Callable:
  """``reconstruct(params, x_BxD, key, hp) -> (x_tilde, x_hat)``: ``x_tilde`` the input corrupted per
  ``config.corruption`` (with the first half of ``split(key)``), ``x_hat = decode(params, encode(params,
  x_tilde))`` (the code: a posterior mean, mean direction, ...)."""
  corrupt = corrupt_fn(config)

  def reconstruct(params, x_BxD, key, hp):
    x_tilde = corrupt(jax.random.split(key)[0], x_BxD, hp)
    return x_tilde, decode(params, encode(params, x_tilde))

  return reconstruct
