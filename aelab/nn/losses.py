"""Per-example reconstruction losses, code penalties and KL terms, as pure functions.

Every loss returns one value per example (shape ``B``); the caller reduces. Log-probabilities are in
nats. Inputs are flattened: ``x_BxD`` holds ``B`` examples of ``D`` features (pixels).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = np.float32(math.log(2.0 * math.pi))  # as float32 as jnp.log's (same bits), with no compile at import


def mse(x_hat_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
  """Mean squared error per example, averaged over features: shape ``B``, units per pixel."""
  return jnp.mean(jnp.square(x_hat_BxD - x_BxD), axis=-1)


def sigmoid_bce(logits: jax.Array, labels: jax.Array | float) -> jax.Array:
  """Elementwise binary cross-entropy ``-labels log sigmoid(l) - (1 - labels) log(1 - sigmoid(l))``, nats.

  The stable form ``max(l, 0) - l labels + log(1 + exp(-|l|))``: the same function as optax's
  ``sigmoid_binary_cross_entropy``, written once here so that every loss rounds the same way.
  """
  return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def bce_with_logits(logits_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
  """Binary cross-entropy ``-log p(x|z)`` of a Bernoulli likelihood, summed over features.

  Args:
    logits_BxD: decoder logits (any real values).
    x_BxD: targets in [0, 1] (binary, or grey levels as soft targets).
  Returns:
    Shape ``B``, nats per example: :func:`sigmoid_bce` summed over ``D``.
  """
  return jnp.sum(sigmoid_bce(logits_BxD, x_BxD), axis=-1)


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_var: jax.Array | float = 0.0) -> jax.Array:
  """``log N(x; mean, exp(log_var))`` of each element (arguments broadcast together), nats."""
  return -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))


def gaussian_nll(mean_BxD: jax.Array, x_BxD: jax.Array, log_var: jax.Array | float = 0.0) -> jax.Array:
  """``-log N(x; mean, diag exp(log_var))`` summed over the last axis (features): shape ``B`` (or any leading
  shape), nats per example."""
  return -jnp.sum(gaussian_log_density(x_BxD, mean_BxD, log_var), axis=-1)


def kl_standard_normal_per_dim(mean_BxZ: jax.Array, log_var_BxZ: jax.Array) -> jax.Array:
  """Closed-form ``KL(N(mean_j, exp(log_var_j)) || N(0, 1))`` per example and latent dimension.

  Kingma & Welling (2014), Auto-Encoding Variational Bayes, Appendix B:
  ``-1/2 (1 + log_var - mean^2 - exp(log_var))``. Returns shape ``B x Z``, nats.
  """
  return -0.5 * (1.0 + log_var_BxZ - jnp.square(mean_BxZ) - jnp.exp(log_var_BxZ))


def kl_standard_normal(mean_BxZ: jax.Array, log_var_BxZ: jax.Array) -> jax.Array:
  """``KL(N(mean, diag exp(log_var)) || N(0, I))``: :func:`kl_standard_normal_per_dim` summed over the
  latent dimensions. Returns shape ``B``, nats per example."""
  return jnp.sum(kl_standard_normal_per_dim(mean_BxZ, log_var_BxZ), axis=-1)


def l1_activity(z_BxZ: jax.Array) -> jax.Array:
  """L1 activity penalty ``sum_j |z_j|`` per example (shape ``B``); multiply by the weight lambda."""
  return jnp.sum(jnp.abs(z_BxZ), axis=-1)


def kl_sparsity(z_BxZ: jax.Array, sparsity_target: jax.Array | float, eps: float = 1e-6) -> jax.Array:
  """Sparsity penalty ``sum_j KL(rho || rho_hat_j)`` of Bernoulli means (Ng, CS294A notes, 2011).

  ``rho_hat_j`` is the mean activation of code unit ``j`` over the batch, so unlike the other losses
  this is one value per batch (a scalar), not per example.

  Args:
    z_BxZ: code activations in (0, 1) (a sigmoid code).
    sparsity_target: rho, the target mean activation in (0, 1).
  Returns:
    Scalar, nats per batch.
  """
  rho = sparsity_target
  rho_hat = jnp.clip(jnp.mean(z_BxZ, axis=0), eps, 1.0 - eps)
  kl = rho * jnp.log(rho / rho_hat) + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat))
  return jnp.sum(kl)


def squared_distances(a_NxZ: jax.Array, b_MxZ: jax.Array) -> jax.Array:
  """Pairwise squared Euclidean distances ``||a_i - b_j||^2``: shape ``N x M``."""
  return jnp.sum(jnp.square(a_NxZ[:, None, :] - b_MxZ[None, :, :]), axis=-1)


def imq_kernel(a_NxZ: jax.Array, b_MxZ: jax.Array, scale: jax.Array | float) -> jax.Array:
  """Inverse multiquadratic kernel ``C / (C + ||a_i - b_j||^2)``: shape ``N x M``.

  ``scale`` is ``C``; Tolstikhin et al. 2018 (Wasserstein Auto-Encoders, Sec. 4) and pythae take
  ``C = 2 * latent_dim * sigma^2`` (:func:`kernel_scale`).
  """
  return scale / (scale + squared_distances(a_NxZ, b_MxZ))


def rbf_kernel(a_NxZ: jax.Array, b_MxZ: jax.Array, scale: jax.Array | float) -> jax.Array:
  """Gaussian (RBF) kernel ``exp(-||a_i - b_j||^2 / C)``: shape ``N x M``; ``scale`` is ``C``."""
  return jnp.exp(-squared_distances(a_NxZ, b_MxZ) / scale)


KERNELS = {'imq': imq_kernel, 'rbf': rbf_kernel}


def kernel_scale(latent_dim: int, bandwidth: jax.Array | float) -> jax.Array | float:
  """``C = 2 * latent_dim * sigma^2``: the kernel scale of WAE-MMD for a bandwidth ``sigma`` (Tolstikhin et al.
  2018 take ``C = 2 Z sigma_z^2`` for a prior ``N(0, sigma_z^2 I)``; pythae's ``kernel_bandwidth`` is ``sigma``)."""
  return 2.0 * latent_dim * jnp.square(bandwidth)


def mmd(z_NxZ: jax.Array, z_prior_MxZ: jax.Array, kernel: str, scale: jax.Array | float) -> jax.Array:
  """Unbiased estimate of the squared maximum mean discrepancy ``MMD^2(q, p)`` between codes ``z ~ q`` and
  prior samples ``z_prior ~ p`` (a scalar; ``N, M >= 2``):

  ``1/(N(N-1)) sum_{i != j} k(z_i, z_j) + 1/(M(M-1)) sum_{i != j} k(p_i, p_j) - 2/(NM) sum_{i,j} k(z_i, p_j)``

  (Gretton et al. 2012, Eq. 3; Tolstikhin et al. 2018, Algorithm 2). ``kernel``: ``'imq'`` or ``'rbf'``
  (:data:`KERNELS`), with scale ``C``. pythae's ``mmd_loss`` term in its WAE and InfoVAE losses is ``N`` times
  this (it divides the kernel sums by ``N - 1`` and ``N`` only), so its ``reg_weight`` is ``N`` times ours.
  """
  k = KERNELS[kernel]
  n, m = z_NxZ.shape[0], z_prior_MxZ.shape[0]
  k_qq = k(z_NxZ, z_NxZ, scale)
  k_pp = k(z_prior_MxZ, z_prior_MxZ, scale)
  within_q = (jnp.sum(k_qq) - jnp.sum(jnp.diagonal(k_qq))) / (n * (n - 1))
  within_p = (jnp.sum(k_pp) - jnp.sum(jnp.diagonal(k_pp))) / (m * (m - 1))
  return within_q + within_p - 2.0 * jnp.mean(k(z_NxZ, z_prior_MxZ, scale))


def gaussian_mixture_log_density(z_BxZ: jax.Array, means_KxZ: jax.Array, log_vars_KxZ: jax.Array) -> jax.Array:
  """``log (1/K) sum_k N(z; mean_k, diag exp(log_var_k))`` per example: shape ``B``, nats. The VampPrior's
  log-density (Tomczak & Welling 2018, Eq. 9) with the posteriors of its ``K`` pseudo-inputs as components.

  The squares ``sum_j (z_j - m_kj)^2 / v_kj`` are expanded into three ``B x Z`` by ``Z x K`` products, so memory is
  ``B x K``, not ``B x K x Z`` (the importance-sampled NLL evaluates it on ``k x B`` samples at once).
  """
  precision_KxZ = jnp.exp(-log_vars_KxZ)
  squares_BxK = (jnp.square(z_BxZ) @ precision_KxZ.T - 2.0 * z_BxZ @ (means_KxZ * precision_KxZ).T
                 + jnp.sum(jnp.square(means_KxZ) * precision_KxZ, axis=-1)[None])
  const_K = jnp.sum(log_vars_KxZ, axis=-1) + z_BxZ.shape[-1] * _LOG_2PI
  log_n_BxK = -0.5 * (const_K[None] + squares_BxK)
  return jax.nn.logsumexp(log_n_BxK, axis=-1) - math.log(means_KxZ.shape[0])
