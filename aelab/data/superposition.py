"""Sparse features in superposition (Elhage et al. 2022, Toy Models of Superposition, Sec. 2), generated
with numpy: ground truth for sparse dictionary learning.

``n`` feature directions ``d_i`` (unit vectors in ``R^d``, drawn uniformly on the sphere, so with
``n > d`` they cannot be orthogonal: superposition), and examples ``x = sum_i a_i s_i d_i`` where feature
``i`` is active (``s_i = 1``) with probability ``p`` independently, and its magnitude ``a_i`` is uniform
in ``[magnitude_min, magnitude_max]`` (Elhage et al.: uniform in [0, 1], sparsity ``S = 1 - p``). An
example has on average ``n p`` active features. Everything is seeded by ``seed``: the same fields give
the same directions and examples, so the true directions can be rebuilt from the config for evaluation
(:func:`directions`).

Correlated and hierarchical variants (``correlation``, ``hierarchy``, ``child_probability``; default off,
and then the examples are the same as without these fields):

- ``correlation = rho``: whether features are active is decided by an equicorrelated Gaussian copula,
  ``g_i = sqrt(rho) c + sqrt(1 - rho) e_i`` with standard normal ``c``, ``e_i``, and feature ``i`` active
  when ``g_i < Phi^-1(p)``: each still active with probability ``p``, any two together more often
  (correlation of the Gaussians ``rho``).
- ``hierarchy = h > 0``: the features form ``P = n // (h + 1)`` families of a parent and ``h`` children
  (parent ``i`` is feature ``i``, its children ``P + i h, ..., P + i h + h - 1``; the remaining
  ``n - P (h + 1)`` features are independent). A parent fires as any feature does (probability ``p``);
  when it fires, one of its children, uniform, fires too with probability ``child_probability``; children
  never fire without their parent (Chanin et al. 2024, "A is for Absorption", Sec. 4's toy setting). An
  SAE that *absorbs* the parent into the children's latents leaves the parent's latent silent when a child
  fires (:func:`absorption`).

Config fields (``config.data.superposition``): ``num_features`` (n), ``dim`` (d), ``probability`` (p),
``magnitude_min``, ``magnitude_max``, ``num_train``, ``num_test``, ``seed``, ``correlation`` (rho),
``hierarchy`` (h), ``child_probability``.
"""
import dataclasses
import statistics

import jax
import jax.numpy as jnp
import numpy as np


class SuperpositionError(ValueError):
  """A field of ``data.superposition`` is out of range; the message names it and what to do."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """The generator's fields (see the module docstring); defaults: 96 features in 32 dimensions (3x),
  about 3 active per example."""
  num_features: int = 96
  dim: int = 32
  probability: float = 1 / 32
  magnitude_min: float = 0.0
  magnitude_max: float = 1.0
  num_train: int = 50_000
  num_test: int = 10_000
  seed: int = 0
  correlation: float = 0.0
  hierarchy: int = 0
  child_probability: float = 0.5


def spec(fields: dict | None) -> Spec:
  """The :class:`Spec` of ``fields`` (e.g. ``config.data.superposition``; absent or None fields take the
  defaults). Raises SuperpositionError for an unknown field or a value out of range."""
  fields = {k: v for k, v in dict(fields or {}).items() if v is not None}
  known = {f.name for f in dataclasses.fields(Spec)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise SuperpositionError(f'data.superposition has unknown fields {unknown}; known: {sorted(known)}.')
  s = Spec(**fields)
  for name in ('num_features', 'dim', 'num_train', 'num_test'):
    value = getattr(s, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise SuperpositionError(f'data.superposition.{name}={value!r} must be an integer >= 1.')
  if not 0 < s.probability <= 1:
    raise SuperpositionError(f'data.superposition.probability={s.probability} (of a feature being active) must '
                             'lie in (0, 1], e.g. 1/32.')
  if not 0 <= s.correlation < 1:
    raise SuperpositionError(f'data.superposition.correlation={s.correlation} must lie in [0, 1), e.g. 0.3.')
  if not isinstance(s.hierarchy, int) or not 0 <= s.hierarchy < s.num_features:
    raise SuperpositionError(f'data.superposition.hierarchy={s.hierarchy!r} (children per parent) must be an integer '
                             f'in [0, num_features={s.num_features}), e.g. 3; 0 for no hierarchy.')
  if not 0 <= s.child_probability <= 1:
    raise SuperpositionError(f'data.superposition.child_probability={s.child_probability} must lie in [0, 1].')
  if not 0 <= s.magnitude_min < s.magnitude_max:
    raise SuperpositionError(f'data.superposition magnitudes [{s.magnitude_min}, {s.magnitude_max}] must satisfy '
                             '0 <= magnitude_min < magnitude_max.')
  return s


def directions(s: Spec) -> np.ndarray:
  """The true feature directions: float32 ``n x d``, unit rows, uniform on the sphere (normalized
  Gaussians), from ``default_rng(seed)``'s first draw."""
  rng = np.random.default_rng(s.seed)
  d_NxD = rng.standard_normal((s.num_features, s.dim))
  return (d_NxD / np.linalg.norm(d_NxD, axis=1, keepdims=True)).astype(np.float32)


def num_parents(s: Spec) -> int:
  """``P``: the number of parent features (0 without a hierarchy); parents are features ``0 .. P-1``."""
  return s.num_features // (s.hierarchy + 1) if s.hierarchy else 0


def children(s: Spec) -> np.ndarray:
  """The children of each parent: int ``P x h`` feature indices (``P + i h + j``)."""
  p = num_parents(s)
  return p + np.arange(p * s.hierarchy).reshape(p, s.hierarchy)


def active(s: Spec, num: int, rng: np.random.Generator) -> np.ndarray:
  """Which features are active: bool ``num x n`` (independent, through the copula of ``correlation``, or
  with the ``hierarchy``'s children; see the module docstring)."""
  if s.correlation == 0 and not s.hierarchy:
    return rng.random((num, s.num_features)) < s.probability
  shared = rng.standard_normal((num, 1))
  g = np.sqrt(s.correlation) * shared + np.sqrt(1 - s.correlation) * rng.standard_normal((num, s.num_features))
  on = g < statistics.NormalDist().inv_cdf(s.probability)  # the Gaussian quantile of the firing probability
  if s.hierarchy:
    kids = children(s)
    on[:, kids.reshape(-1)] = False
    fire = on[:, :len(kids)] & (rng.random((num, len(kids))) < s.child_probability)
    pick = kids[np.arange(len(kids))[None], rng.integers(0, s.hierarchy, (num, len(kids)))]
    rows, parents = np.nonzero(fire)
    on[rows, pick[rows, parents]] = True
  return on


def features(s: Spec, num: int, rng: np.random.Generator) -> np.ndarray:
  """Feature activations ``a_i s_i``: float32 ``num x n``, nonzero where :func:`active` (each feature with
  probability ``p`` without a hierarchy) and then uniform in ``[magnitude_min, magnitude_max]``."""
  on = active(s, num, rng)
  magnitude = rng.uniform(s.magnitude_min, s.magnitude_max, (num, s.num_features))
  return (on * magnitude).astype(np.float32)


def generate(s: Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(x_train_NxD, x_test_MxD, directions_nxD)``, float32: ``x = features @ directions``."""
  x_train, x_test, d_NxD, _ = generate_with_features(s)
  return x_train, x_test, d_NxD


def generate_with_features(s: Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """:func:`generate` and the test split's feature activations ``a_test_Mxn`` (float32, ``x_test = a_test @
  directions``)."""
  d_NxD = directions(s)
  rng = np.random.default_rng([s.seed, 1])
  x_train = features(s, s.num_train, rng) @ d_NxD
  a_test = features(s, s.num_test, rng)
  return x_train.astype(np.float32), (a_test @ d_NxD).astype(np.float32), d_NxD, a_test


def mean_max_cosine(true_NxD, learned_MxD) -> jax.Array:
  """Mean over true features of the largest cosine similarity with any learned direction (MMCS; Sharkey
  et al. 2022, "Taking features out of superposition with sparse autoencoders"). 1.0 when every true
  direction is among the learned ones. Rows of either need not be normalized; zero rows count as 0.
  Traceable (a float32 scalar). Raises ValueError when the two have different dimensions."""
  true_NxD, learned_MxD = jnp.asarray(true_NxD, jnp.float32), jnp.asarray(learned_MxD, jnp.float32)
  if true_NxD.ndim != 2 or learned_MxD.ndim != 2 or true_NxD.shape[1] != learned_MxD.shape[1]:
    raise ValueError(f'MMCS needs n x D and m x D directions with one D; got {true_NxD.shape}, {learned_MxD.shape}.')
  unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
  return jnp.mean(jnp.max(unit(true_NxD) @ unit(learned_MxD).T, axis=1))


def absorption(parents_PxD, children_Pxh, features_test_Mxn, codes_MxZ, learned_ZxD) -> dict[str, float]:
  """Feature absorption on hierarchical data (Chanin et al. 2024, "A is for Absorption: Studying Feature
  Splitting and Absorption in Sparse Autoencoders", Sec. 4, with the ground truth known). Each parent's
  latent is the learned direction with the largest cosine with the parent's direction. Returns
  ``absorption``: the mean over parents of the fraction of test examples where the parent and one of its
  children are active on which the parent's latent does not fire (0: never absorbed; 1: always, the
  child's latent carries the parent), ``parent_alone_miss``: the same fraction on examples where the
  parent fires without a child (a latent that misses its parent even then is not absorbing, just
  poor), and ``parent_mmcs``: the mean over parents of that largest cosine. Parents without such
  examples are left out of the means; a fraction that no parent has examples for is left out of the
  result (``parent_alone_miss`` when ``child_probability`` is 1). Host numpy; ``codes_MxZ`` nonzero where
  a latent fires."""
  unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
  cos_PxZ = unit(np.asarray(parents_PxD, np.float32)) @ unit(np.asarray(learned_ZxD, np.float32)).T
  latent_P = np.argmax(cos_PxZ, axis=1)
  on_Mxn = np.asarray(features_test_Mxn) > 0
  fires_MxP = np.asarray(codes_MxZ)[:, latent_P] != 0
  parent_MxP = on_Mxn[:, :len(latent_P)]
  child_MxP = np.stack([on_Mxn[:, kids].any(axis=1) for kids in np.asarray(children_Pxh)], axis=1)

  def miss(mask_MxP):
    counts = mask_MxP.sum(axis=0)
    rates = (mask_MxP & ~fires_MxP).sum(axis=0) / np.maximum(counts, 1)
    return float(np.mean(rates[counts > 0])) if np.any(counts > 0) else None

  out = {'absorption': miss(parent_MxP & child_MxP), 'parent_alone_miss': miss(parent_MxP & ~child_MxP),
         'parent_mmcs': float(np.mean(np.max(cos_PxZ, axis=1)))}
  return {k: v for k, v in out.items() if v is not None}
