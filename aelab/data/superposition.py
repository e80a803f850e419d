"""Sparse features in superposition (Elhage et al. 2022, Toy Models of Superposition, Sec. 2), generated
with numpy: ground truth for sparse dictionary learning.

``n`` feature directions ``d_i`` (unit vectors in ``R^d``, drawn uniformly on the sphere, so with
``n > d`` they cannot be orthogonal: superposition), and examples ``x = sum_i a_i s_i d_i`` where feature
``i`` is active (``s_i = 1``) with probability ``p`` independently, and its magnitude ``a_i`` is uniform
in ``[magnitude_min, magnitude_max]`` (Elhage et al.: uniform in [0, 1], sparsity ``S = 1 - p``). An
example has on average ``n p`` active features. Everything is seeded by ``seed``: the same fields give
the same directions and examples, so the true directions can be rebuilt from the config for evaluation
(:func:`directions`).

Config fields (``config.data.superposition``): ``num_features`` (n), ``dim`` (d), ``probability`` (p),
``magnitude_min``, ``magnitude_max``, ``num_train``, ``num_test``, ``seed``.
"""
import dataclasses

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


def features(s: Spec, num: int, rng: np.random.Generator) -> np.ndarray:
  """Feature activations ``a_i s_i``: float32 ``num x n``, each nonzero with probability ``p`` and then
  uniform in ``[magnitude_min, magnitude_max]``."""
  active = rng.random((num, s.num_features)) < s.probability
  magnitude = rng.uniform(s.magnitude_min, s.magnitude_max, (num, s.num_features))
  return (active * magnitude).astype(np.float32)


def generate(s: Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(x_train_NxD, x_test_MxD, directions_nxD)``, float32: ``x = features @ directions``."""
  d_NxD = directions(s)
  rng = np.random.default_rng([s.seed, 1])
  x_train = features(s, s.num_train, rng) @ d_NxD
  x_test = features(s, s.num_test, rng) @ d_NxD
  return x_train.astype(np.float32), x_test.astype(np.float32), d_NxD


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
