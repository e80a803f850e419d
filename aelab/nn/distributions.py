"""Latent distributions beyond the Gaussian: the categorical with its Gumbel-softmax relaxation.

Log-probabilities and KL terms in plain ``jax.numpy``, nats; ``N`` categorical variables of ``K`` classes
each are stored as ``..._BxNxK``.
"""
import math

import jax
import jax.numpy as jnp


def gumbel_softmax(key: jax.Array, logits_BxNxK: jax.Array, temperature: jax.Array | float,
                   straight_through: bool = False) -> jax.Array:
  """A relaxed one-hot sample ``softmax((logits + g) / temperature)``, ``g ~ Gumbel(0, 1)`` (Jang et al.
  2017, Eq. 2; Maddison et al. 2017). ``straight_through``: the one-hot of its argmax in the forward pass
  and the relaxed sample's gradient (Jang et al. 2017, Sec. 2.2). Returns ``B x N x K``."""
  g = jax.random.gumbel(key, logits_BxNxK.shape, logits_BxNxK.dtype)
  soft = jax.nn.softmax((logits_BxNxK + g) / temperature, axis=-1)
  if not straight_through:
    return soft
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def sample_categorical(key: jax.Array, logits_BxNxK: jax.Array, num_samples: int | None = None) -> jax.Array:
  """Exact one-hot samples of ``Cat(softmax(logits))`` (the Gumbel-max trick, Jang et al. 2017, Eq. 1):
  ``B x N x K``, or ``S x B x N x K`` with ``num_samples = S``."""
  logits = logits_BxNxK if num_samples is None else jnp.broadcast_to(logits_BxNxK, (num_samples,
                                                                                      *logits_BxNxK.shape))
  index = jnp.argmax(logits + jax.random.gumbel(key, logits.shape, logits.dtype), axis=-1)
  return jax.nn.one_hot(index, logits_BxNxK.shape[-1], dtype=logits_BxNxK.dtype)


def categorical_log_prob(logits_BxNxK: jax.Array, one_hot_BxNxK: jax.Array) -> jax.Array:
  """``log q(z)`` of one-hot ``z`` under ``Cat(softmax(logits))``, summed over the ``N`` variables: shape
  ``B`` (or any leading shape), nats."""
  return jnp.sum(one_hot_BxNxK * jax.nn.log_softmax(logits_BxNxK, axis=-1), axis=(-2, -1))


def kl_categorical_uniform(logits_BxNxK: jax.Array) -> jax.Array:
  """``KL(Cat(softmax(logits)) || Uniform(K))`` summed over the ``N`` variables: ``sum q log(K q)``, shape
  ``B``, nats per example (Jang et al. 2017, Sec. 4; 0 for a uniform posterior, at most ``N log K``)."""
  log_q = jax.nn.log_softmax(logits_BxNxK, axis=-1)
  return jnp.sum(jnp.exp(log_q) * (log_q + math.log(logits_BxNxK.shape[-1])), axis=(-2, -1))


# ---- the von Mises-Fisher distribution on the sphere S^{M-1} in R^M (Davidson et al. 2018) ----

_DEBYE_U = (  # u_k(t) of the Debye expansion, coefficients of t^k, t^(k+2), ... (Abramowitz & Stegun 9.3.9-10)
    (3.0, -5.0),
    (81.0, -462.0, 385.0),
    (30375.0, -369603.0, 765765.0, -425425.0),
    (4465125.0, -94121676.0, 349922430.0, -446185740.0, 185910725.0),
)
_DEBYE_DENOM = (24.0, 1152.0, 414720.0, 39813120.0)
_SERIES_TERMS = 64
_SERIES_BELOW = 15.0  # sqrt(v^2 + x^2) under which the power series is used


def _log_iv_series(v: jax.Array, x: jax.Array) -> jax.Array:
  """``log I_v(x)`` from ``sum_j (x/2)^(2j+v) / (j! Gamma(j+v+1))`` (A&S 9.6.10), 64 terms in log space."""
  j = jnp.arange(_SERIES_TERMS, dtype=x.dtype).reshape((1,) * x.ndim + (_SERIES_TERMS,))
  log_terms = ((2.0 * j + v[..., None]) * jnp.log(x[..., None] / 2.0) - jax.scipy.special.gammaln(j + 1.0)
               - jax.scipy.special.gammaln(j + v[..., None] + 1.0))
  return jax.nn.logsumexp(log_terms, axis=-1)


def _log_iv_debye(v: jax.Array, x: jax.Array) -> jax.Array:
  """``log I_v(x)`` from the uniform asymptotic (Debye) expansion (A&S 9.7.7) with ``u_1 .. u_4``, written in
  ``r = sqrt(v^2 + x^2)`` so that it holds for every order ``v >= 0`` once ``r`` is large."""
  r = jnp.sqrt(jnp.square(v) + jnp.square(x))
  t2, r_inv = jnp.square(v / r), 1.0 / r
  correction = jnp.ones_like(r)
  for k, (coefficients, denom) in enumerate(zip(_DEBYE_U, _DEBYE_DENOM), start=1):
    # u_k(t) / v^k with t = v / r: r^-k sum_i c_i t^(2i), no overflow for large r
    correction = correction + r_inv ** k * sum(c * t2 ** i for i, c in enumerate(coefficients)) / denom
  return r + v * jnp.log(x / (v + r)) - 0.5 * jnp.log(2.0 * jnp.pi * r) + jnp.log(correction)


def log_bessel_iv(v: jax.Array | float, x: jax.Array) -> jax.Array:
  """``log I_v(x)``, the modified Bessel function of the first kind, for orders ``v >= 0`` and ``x > 0``
  (any shapes that broadcast): the power series where ``sqrt(v^2 + x^2) < 15``, else the Debye expansion;
  relative error under 1e-5 against ``scipy.special.ive`` (tests), differentiable in ``x``."""
  x = jnp.maximum(jnp.asarray(x, jnp.float32), 1e-30)
  v = jnp.broadcast_to(jnp.asarray(v, x.dtype), x.shape)
  small = jnp.sqrt(jnp.square(v) + jnp.square(x)) < _SERIES_BELOW
  return jnp.where(small, _log_iv_series(v, jnp.where(small, x, 1.0)), _log_iv_debye(v, jnp.where(small, 1.0, x)))


def log_sphere_area(dim: int) -> float:
  """``log |S^{M-1}|``, the log surface area of the unit sphere in ``R^M``: ``log(2 pi^(M/2) / Gamma(M/2))``."""
  return math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)


def vmf_log_normalizer(kappa_B: jax.Array, dim: int) -> jax.Array:
  """``log C_M(kappa) = (M/2 - 1) log kappa - (M/2) log(2 pi) - log I_{M/2-1}(kappa)`` (Davidson et al. 2018,
  Eq. 2): shape ``B``."""
  return ((0.5 * dim - 1.0) * jnp.log(kappa_B) - 0.5 * dim * math.log(2.0 * math.pi)
          - log_bessel_iv(0.5 * dim - 1.0, kappa_B))


def vmf_mean_resultant(kappa_B: jax.Array, dim: int) -> jax.Array:
  """``A_M(kappa) = I_{M/2}(kappa) / I_{M/2-1}(kappa) = E[mu . z]``: the mean resultant length, shape ``B``."""
  return jnp.exp(log_bessel_iv(0.5 * dim, kappa_B) - log_bessel_iv(0.5 * dim - 1.0, kappa_B))


def vmf_log_prob(mu_BxM: jax.Array, kappa_B: jax.Array, z_BxM: jax.Array) -> jax.Array:
  """``log q(z) = log C_M(kappa) + kappa mu . z`` of ``vMF(mu, kappa)``, nats, shape ``B`` (or any leading)."""
  return vmf_log_normalizer(kappa_B, mu_BxM.shape[-1]) + kappa_B * jnp.sum(mu_BxM * z_BxM, axis=-1)


def kl_vmf_uniform(kappa_B: jax.Array, dim: int) -> jax.Array:
  """``KL(vMF(mu, kappa) || U(S^{M-1})) = kappa A_M(kappa) + log C_M(kappa) + log |S^{M-1}|`` (Davidson et al.
  2018, Eq. 14; independent of ``mu``): shape ``B``, nats per example."""
  return kappa_B * vmf_mean_resultant(kappa_B, dim) + vmf_log_normalizer(kappa_B, dim) + log_sphere_area(dim)


def _wood_w(eps: jax.Array, b: jax.Array) -> jax.Array:
  """``w = (1 - (1 + b) eps) / (1 - (1 - b) eps)``: the component along ``mu`` of Wood's proposal."""
  return (1.0 - (1.0 + b) * eps) / (1.0 - (1.0 - b) * eps)


def vmf_sample(key: jax.Array, mu_BxM: jax.Array, kappa_B: jax.Array, num_proposals: int = 20) -> jax.Array:
  """A reparameterized sample of ``vMF(mu, kappa)`` on ``S^{M-1}`` (Wood 1994; Davidson et al. 2018, Alg. 1-2):
  ``w = mu . z`` by rejection from ``eps ~ Beta((M-1)/2, (M-1)/2)``, a uniform direction ``v`` orthogonal to
  ``e_1``, then the Householder reflection taking ``e_1`` to ``mu``. ``num_proposals`` proposals are drawn at
  once and the first accepted kept (the acceptance rate is above 0.5 for every ``kappa`` and ``M``).
  Gradients flow to ``mu`` and, through ``w(eps, kappa)`` with the accepted ``eps`` held fixed, to ``kappa``
  (Davidson et al.'s ``g_rep``; the correction ``g_cor`` is left out, as in their code). Returns ``z_BxM``."""
  m = mu_BxM.shape[-1]
  beta_key, accept_key, v_key = jax.random.split(key, 3)
  root = jnp.sqrt(4.0 * jnp.square(kappa_B) + (m - 1.0) ** 2)
  b = (m - 1.0) / (2.0 * kappa_B + root)  # = (-2 kappa + root) / (m - 1), without cancellation
  a = (m - 1.0 + 2.0 * kappa_B + root) / 4.0
  d = 4.0 * a * b / (1.0 + b) - (m - 1.0) * math.log(m - 1.0)
  eps_BxP = jax.random.beta(beta_key, (m - 1.0) / 2.0, (m - 1.0) / 2.0, (mu_BxM.shape[0], num_proposals))
  b_, a_, d_ = (jax.lax.stop_gradient(c)[:, None] for c in (b, a, d))
  t = 2.0 * a_ * b_ / (1.0 - (1.0 - b_) * eps_BxP)
  accept = (m - 1.0) * jnp.log(t) - t + d_ >= jnp.log(jax.random.uniform(accept_key, eps_BxP.shape))
  first = jnp.argmax(accept, axis=-1)  # the first accepted proposal (the last one when none is)
  first = jnp.where(jnp.any(accept, axis=-1), first, num_proposals - 1)
  eps_B = jnp.take_along_axis(eps_BxP, first[:, None], axis=-1)[:, 0]
  w_B = _wood_w(eps_B, b)
  v = jax.random.normal(v_key, (mu_BxM.shape[0], m - 1), mu_BxM.dtype)
  v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
  z_e1 = jnp.concatenate([w_B[:, None], jnp.sqrt(jnp.clip(1.0 - jnp.square(w_B), 0.0))[:, None] * v], axis=-1)
  return householder_e1_to(mu_BxM, z_e1)


def householder_e1_to(mu_BxM: jax.Array, z_BxM: jax.Array) -> jax.Array:
  """``U z`` with ``U = I - 2 u u^T``, ``u = (e_1 - mu) / |e_1 - mu|``: the reflection taking ``e_1`` to the unit
  vector ``mu`` (Davidson et al. 2018, Alg. 3). Returns ``B x M``."""
  e1 = jnp.zeros_like(mu_BxM).at[:, 0].set(1.0)
  u = e1 - mu_BxM
  u = u / (jnp.linalg.norm(u, axis=-1, keepdims=True) + 1e-12)
  return z_BxM - 2.0 * jnp.sum(u * z_BxM, axis=-1, keepdims=True) * u


def uniform_sphere(key: jax.Array, num: int, dim: int) -> jax.Array:
  """``num`` samples of the uniform distribution on ``S^{dim-1}`` (normalized Gaussians): ``num x dim``."""
  z = jax.random.normal(key, (num, dim))
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


# ---- diagonal Gaussians (the ladder VAE's levels) ----


def kl_gaussians(mean_q: jax.Array, log_var_q: jax.Array, mean_p: jax.Array, log_var_p: jax.Array) -> jax.Array:
  """``KL(N(mean_q, diag exp(log_var_q)) || N(mean_p, diag exp(log_var_p)))`` summed over the last axis:
  ``1/2 sum(log_var_p - log_var_q + (exp(log_var_q) + (mean_q - mean_p)^2) / exp(log_var_p) - 1)``, nats."""
  return 0.5 * jnp.sum(log_var_p - log_var_q + (jnp.exp(log_var_q) + jnp.square(mean_q - mean_p))
                       * jnp.exp(-log_var_p) - 1.0, axis=-1)


def precision_weighted_merge(mean_a: jax.Array, log_var_a: jax.Array, mean_b: jax.Array,
                             log_var_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(mean, log_var)`` of the normalized product of two diagonal Gaussians: precisions add and the mean is the
  precision-weighted mean (Sonderby et al. 2016, Ladder Variational Autoencoders, Eq. 18-19)."""
  precision_a, precision_b = jnp.exp(-log_var_a), jnp.exp(-log_var_b)
  precision = precision_a + precision_b
  return (mean_a * precision_a + mean_b * precision_b) / precision, -jnp.log(precision)
