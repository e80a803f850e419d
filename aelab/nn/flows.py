"""Normalizing flows on latent codes: planar flows and inverse autoregressive flows (IAF) with MADE layers.

Every flow maps ``z_BxZ -> (z_BxZ, log_det_B)``: the transformed codes and ``log |det df/dz|`` per example
(nats). A posterior refined by a flow has ``log q_K(z_K|x) = log q_0(z_0|x) - sum_k log |det df_k/dz_{k-1}|``
(Rezende & Mohamed 2015, Eq. 7). The flows' parameters are shared by all examples, as in pythae's
``VAE_LinNF`` and ``VAE_IAF``; an IAF may also take a context ``h_BxC`` from the encoder (Kingma et al. 2016,
Sec. 4), which conditions each step on ``x`` without changing its autoregressive structure in ``z``.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FLOWS = ('planar', 'iaf')


def made_degrees(num_in: int, hidden: Sequence[int]) -> list[np.ndarray]:
  """MADE degrees (Germain et al. 2015, Sec. 4): inputs ``1..num_in``, hidden units cycling over
  ``1..num_in-1`` (1 when ``num_in = 1``). Returns one int array per layer, inputs first."""
  degrees = [np.arange(1, num_in + 1)]
  for width in hidden:
    degrees.append(np.arange(width) % max(num_in - 1, 1) + 1)
  return degrees


def made_masks(num_in: int, hidden: Sequence[int]) -> list[np.ndarray]:
  """The masks ``M_l`` (``in x out``, 0/1 float32) of a MADE: a hidden unit of degree ``m`` sees inputs of
  degree ``<= m`` (Germain et al. 2015, Eq. 12); output ``i`` sees hidden units of degree ``< i`` (Eq. 13),
  so output ``i`` depends only on inputs ``1..i-1`` (a strictly lower-triangular Jacobian)."""
  degrees = made_degrees(num_in, hidden)
  masks = [(d_out[None, :] >= d_in[:, None]) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
  masks.append(np.arange(1, num_in + 1)[None, :] > degrees[-1][:, None])
  return [m.astype(np.float32) for m in masks]


class MaskedDense(nn.Module):
  """``x_BxI @ (W * mask) + b``: a dense layer with a fixed 0/1 mask on its kernel (``I x O``)."""
  mask: np.ndarray
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x_BxI: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), self.mask.shape)
    bias = self.param('bias', nn.initializers.constant(self.bias_init), (self.mask.shape[1],))
    return x_BxI @ (kernel * jnp.asarray(self.mask)) + bias[None, :]


class IAFStep(nn.Module):
  """One IAF step (Kingma et al. 2016, Improved Variational Inference with Inverse Autoregressive Flow,
  Eq. 13-14 and Algorithm 1, the numerically stable LSTM-like form): ``[m, s] = MADE(z)``,
  ``sigma = sigmoid(s)``, ``z' = sigma * z + (1 - sigma) * m``, ``log det = sum_i log sigma_i``.

  ``s`` starts near ``forget_bias`` (Kingma et al. suggest +1 or +2) so that each step begins close to the
  identity. ``hidden``: the MADE's hidden widths (ELU activations, as in the paper).
  """
  hidden: tuple[int, ...] = (64,)
  forget_bias: float = 1.0

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, context_BxC: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``context_BxC`` (optional: the encoder's ``h``) enters the first MADE layer through an unmasked dense
    layer (Kingma et al. 2016, Algorithm 1): every output may depend on it, so ``dz'/dz`` stays triangular."""
    masks = made_masks(z_BxZ.shape[-1], self.hidden)
    h = z_BxZ
    for i, mask in enumerate(masks[:-1]):
      h = MaskedDense(mask, name=f'made_{i}')(h)
      if i == 0 and context_BxC is not None:
        h = h + nn.Dense(mask.shape[1], use_bias=False, name='made_context')(context_BxC)
      h = nn.elu(h)
    m = MaskedDense(masks[-1], name='made_m')(h)
    s = MaskedDense(masks[-1], bias_init=self.forget_bias, name='made_s')(h)
    sigma = jax.nn.sigmoid(s)
    return sigma * z_BxZ + (1.0 - sigma) * m, jnp.sum(jax.nn.log_sigmoid(s), axis=-1)


def planar_u_hat(u_Z: jax.Array, w_Z: jax.Array) -> jax.Array:
  """``u_hat = u + (m(w.u) - w.u) w / |w|^2`` with ``m(a) = -1 + softplus(a)``: makes ``w.u_hat >= -1``,
  so the planar map is invertible (Rezende & Mohamed 2015, Appendix A.1)."""
  wu = jnp.dot(w_Z, u_Z)
  return u_Z + (jax.nn.softplus(wu) - 1.0 - wu) * w_Z / (jnp.sum(jnp.square(w_Z)) + 1e-8)


class PlanarFlow(nn.Module):
  """One planar flow ``f(z) = z + u_hat tanh(w.z + b)`` (Rezende & Mohamed 2015, Eq. 10) with
  ``log |det df/dz| = log |1 + u_hat . psi(z)|``, ``psi(z) = (1 - tanh^2(w.z + b)) w`` (Eq. 11-12)."""

  @nn.compact
  def __call__(self, z_BxZ: jax.Array) -> tuple[jax.Array, jax.Array]:
    num_z = z_BxZ.shape[-1]
    w_Z = self.param('w', nn.initializers.normal(0.1), (num_z,))
    u_Z = self.param('u', nn.initializers.normal(0.1), (num_z,))
    b = self.param('b', nn.initializers.zeros, ())
    u_hat_Z = planar_u_hat(u_Z, w_Z)
    h_B = jnp.tanh(z_BxZ @ w_Z + b)
    log_det_B = jnp.log(jnp.abs(1.0 + (1.0 - jnp.square(h_B)) * jnp.dot(u_hat_Z, w_Z)) + 1e-8)
    return z_BxZ + h_B[:, None] * u_hat_Z[None, :], log_det_B


class Flow(nn.Module):
  """``num_steps`` steps of ``kind`` (``'planar'`` or ``'iaf'``) composed: ``z_BxZ -> (z_K, sum log det)``.
  Between IAF steps the order of the latent dimensions is reversed (a permutation, log det 0), so that
  each dimension is conditioned on all others across steps (Kingma et al. 2016, Sec. 4)."""
  kind: str
  num_steps: int
  hidden: tuple[int, ...] = (64,)

  @nn.compact
  def __call__(self, z_BxZ: jax.Array, context_BxC: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``context_BxC``: the encoder's ``h`` for each IAF step (planar steps take none)."""
    if self.kind not in FLOWS:
      raise ValueError(f'Unknown flow {self.kind!r}; choose one of {FLOWS}.')
    log_det_B = jnp.zeros(z_BxZ.shape[:1], z_BxZ.dtype)
    for k in range(self.num_steps):
      if self.kind == 'planar':
        z_BxZ, step_log_det = PlanarFlow(name=f'planar_{k}')(z_BxZ)
      else:
        z_BxZ, step_log_det = IAFStep(self.hidden, name=f'iaf_{k}')(z_BxZ if k == 0 else z_BxZ[:, ::-1], context_BxC)
      log_det_B = log_det_B + step_log_det
    return z_BxZ, log_det_B
