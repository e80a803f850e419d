"""One registry of end-of-training evaluators: what a run's summary.json holds beside its ``train/*`` metrics.

Training (``aelab.train.engine``) and ``python -m aelab.evaluate`` both call :func:`final_metrics`, so
both write the same ``test/*`` keys. An evaluator is a small function ``(Context) -> {'test/<name>':
value}`` that returns ``{}`` where it does not apply. The evaluators of a run, in order:

- :func:`test_split`: the test split's metrics as every epoch logs them (means of the family's
  per-example ``eval``, and its whole-split ``split_eval``: an SAE's dead fraction, a VQ-VAE's codebook
  perplexity); always, even with ``eval.final_metrics=False``;
- with ``eval.final_metrics`` (the default), ``EVALUATORS``: :func:`active_units` and
  :func:`importance_nll` (families with ``log_weights``);
- those keyed on the dataset's ``extras`` (``EXTRAS_EVALUATORS``: :func:`disentanglement_scores` for a dataset
  with ``factor_counts``: shapes2d and the benchmark sources of ``aelab.data.factors``), then those a data
  source lists in ``extras['evaluators']``;
- those the family declares (``Family.evaluators``).

A later evaluator's key replaces an earlier one's. Sampling in evaluation is keyed by
``metrics.EVAL_SEED``, independent of the run's seed.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import data
from aelab.data import shapes2d
from aelab.eval import disentanglement, metrics
from aelab.models import Family


@dataclasses.dataclass
class Context:
  """What an evaluator sees: one trained model and its run's data.

  Attributes:
    family: the model's functions, taking examples as the dataset stores them (uint8 images are converted
      batch by batch; float inputs, such as a factor sampler's images, pass as they are).
    config: the run's config.
    params: the model's parameters (one model, no model axis).
    hp: its traced hyperparameters (``family.HYPERPARAMS`` keys, float32 scalars).
    dataset: the run's dataset (``extras`` for ground truth).
    x_test_MxD: the test split as stored (``dataset.test``, on the device; for a conditional family a
      ``data.Labeled`` pair with the test labels).
    num_samples: ``k`` of the importance-sampled NLL (``eval.nll_samples`` unless overridden).
    shared: compiled functions kept across the models of one group (same family and config), so each
      compiles once.
    known: what the caller already has for these parameters, read through :meth:`once` instead of
      computed again: ``'test'`` (the ``test/*`` metrics of the split, training's last epoch), ``'codes'``
      (``M x Z``) and ``'active_units'`` (training's final program).
  """
  family: Family
  config: ml_collections.ConfigDict
  params: Any
  hp: Any
  dataset: data.Dataset
  x_test_MxD: Any
  num_samples: int
  shared: dict = dataclasses.field(default_factory=dict)
  known: dict = dataclasses.field(default_factory=dict)

  def once(self, name: str, compute: Callable[[], Any]) -> Any:
    """``known[name]``, computed by ``compute()`` the first time it is asked for."""
    if name not in self.known:
      self.known[name] = compute()
    return self.known[name]

  def compiled(self, name: str, build: Callable[[], Callable]) -> Callable:
    """The function ``build()`` returns, built once per ``shared`` dict (one group)."""
    if name not in self.shared:
      self.shared[name] = build()
    return self.shared[name]

  def codes_MxZ(self) -> np.ndarray:
    """Codes of the test split (``family.encode``; a VAE's posterior means), ``M x Z`` on the host."""
    batch = self.config.train.eval_batch_size
    encode = self.compiled('encode_split', lambda: jax.jit(
        lambda params, x: metrics.encode_split(self.family.encode, params, x, batch)))
    return self.once('codes', lambda: np.asarray(encode(self.params, self.x_test_MxD)))


Evaluator = Callable[[Context], dict[str, Any]]


def test_split(ctx: Context) -> dict[str, float]:
  """``test/<name>`` of ``metrics.make_evaluate`` on the test split: means of the family's per-example
  ``eval`` (units as the family documents) and its ``split_eval`` values; the caller's ``known['test']``
  (training's last epoch) when it has them."""
  family, batch = ctx.family, ctx.config.train.eval_batch_size
  evaluate = ctx.compiled('test_split', lambda: metrics.make_evaluate(family.eval, batch, family.split_eval))

  def compute():
    return {f'test/{k}': float(v) for k, v in jax.device_get(evaluate(ctx.params, ctx.x_test_MxD, ctx.hp)).items()}

  return ctx.once('test', compute)


def active_units(ctx: Context) -> dict[str, int]:
  """``test/active_units``: ``metrics.active_units`` of the test codes (Burda et al. 2016, Sec. 5.2); the
  caller's ``known['active_units']`` when it has them."""
  count = ctx.once('active_units', lambda: metrics.active_units(jnp.asarray(ctx.codes_MxZ())))
  return {'test/active_units': int(count)}


def importance_nll(ctx: Context) -> dict[str, Any]:
  """``test/nll``: the importance-sampled ``-log p(x)``, nats per example, mean over the test split, with
  ``test/nll_k = ctx.num_samples`` samples (Burda et al. 2016, Eq. 8); for families with ``log_weights``."""
  if ctx.family.log_weights is None:
    return {}
  e, k = ctx.config.eval, ctx.num_samples
  nll = ctx.compiled(f'nll_{k}', lambda: metrics.make_importance_nll(ctx.family.log_weights, k, e.nll_batch_size,
                                                                      e.nll_chunk_size))
  nll_M = nll(ctx.params, ctx.x_test_MxD, jax.random.key(metrics.EVAL_SEED))
  return {'test/nll': float(jnp.mean(nll_M)), 'test/nll_k': k}


def score_encoder(encode: Callable[[np.ndarray], np.ndarray], sampler: disentanglement.FactorSampler,
                  config: ml_collections.ConfigDict) -> dict[str, float]:
  """``disentanglement.evaluate`` of ``encode(x_NxD) -> codes_NxZ`` on fresh samples of ``sampler`` with
  the config's protocol: ``eval.disent_points`` codes (half as many to test SAP and DCI),
  ``eval.score_points``, ``eval.dci_model``, keyed by ``EVAL_SEED`` (Locatello et al. 2019, Appendix C)."""
  d = config.eval
  return disentanglement.evaluate(encode, sampler, metrics.EVAL_SEED, d.disent_points, d.disent_points // 2,
                                  tuple(d.score_points), d.dci_model)


def disentanglement_scores(ctx: Context) -> dict[str, float]:
  """``test/mig``, ``test/sap``, ``test/dci_*``, ``test/modularity``, ``test/beta_vae_score``,
  ``test/factor_vae_score``, ``test/irs`` (in [0, 1]) and the unsupervised
  ``test/gaussian_total_correlation``, ``test/gaussian_wasserstein_correlation(_norm)`` and
  ``test/mutual_info_score``: :func:`score_encoder` of the model's encoder on the source's
  ``extras['factor_sampler']`` (a benchmark file's rows, ``aelab.data.factors.FactorRows``) or else the
  shapes2d grid of ``extras['factor_counts']`` (``data.shapes2d.size`` pixels), encoded on the host in jitted
  batches; ``{}`` for a source with factors but no sampler (an incomplete grid)."""
  extras = ctx.dataset.extras
  if ctx.family.num_classes:  # a conditional encoder needs labels, which the factor samplers' images lack
    return {}
  if 'factor_sampler' in extras:
    sampler = extras['factor_sampler']
  elif ctx.config.data.name == 'shapes2d':
    counts = tuple(extras['factor_counts'])
    sampler = ctx.compiled('factor_sampler', lambda: shapes2d.Shapes2D(counts, ctx.config.data.shapes2d.size))
  else:
    return {}
  encode = ctx.compiled('encode', lambda: jax.jit(ctx.family.encode))
  batch = ctx.config.train.eval_batch_size

  def encode_NxD(x_NxD):  # in batches: a score's 8,192 images of 64 x 64 x 3 are 403 MB as float32
    return np.concatenate([np.asarray(encode(ctx.params, x_NxD[i:i + batch])) for i in range(0, len(x_NxD), batch)])

  return score_encoder(encode_NxD, sampler, ctx.config)


# With eval.final_metrics: run for every model.
EVALUATORS: dict[str, Evaluator] = {'active_units': active_units, 'nll': importance_nll}
# With eval.final_metrics: run when the dataset's extras hold the key.
EXTRAS_EVALUATORS: dict[str, Evaluator] = {'factor_counts': disentanglement_scores}


def evaluators_of(family: Family, dataset: data.Dataset, final: bool = True) -> list[Evaluator]:
  """The evaluators of a run, in the order of the module docstring; only :func:`test_split` when not
  ``final``."""
  if not final:
    return [test_split]
  keyed = [fn for key, fn in EXTRAS_EVALUATORS.items() if key in dataset.extras]
  return [test_split, *EVALUATORS.values(), *keyed, *dataset.extras.get('evaluators', ()), *family.evaluators]


def final_metrics(family: Family, config: ml_collections.ConfigDict, params: Any, hp: Any, dataset: data.Dataset,
                  x_test_MxD: Any = None, num_samples: int | None = None, shared: dict | None = None,
                  known: dict | None = None) -> dict[str, Any]:
  """The end-of-training ``test/*`` metrics of one model: every evaluator of :func:`evaluators_of`.

  Args:
    family: the model's family, taking examples as the dataset stores them (the engine's
      ``Program.family``; ``program.on_stored_inputs`` of a loaded run's family).
    config: the run's config; ``eval.final_metrics=False`` keeps only the test split's metrics.
    params: one model's parameters (no model axis).
    hp: its traced hyperparameters.
    dataset: the run's dataset.
    x_test_MxD: the stored test split (default ``dataset.test``; a conditional family's
      ``data.Labeled`` pair of it and its labels), on the device or the host.
    num_samples: ``k`` of ``test/nll`` (default ``eval.nll_samples``).
    shared: compiled functions kept across the models of one group (see :class:`Context`).
    known: what the caller already computed for these parameters (see :class:`Context`).

  Returns ``{'test/<name>': value}``. Raises ValueError from an evaluator given inputs it cannot score
  (e.g. MIG of a one-dimensional code).
  """
  x_test_MxD = data.inputs(dataset, 'test', family.num_classes) if x_test_MxD is None else x_test_MxD
  ctx = Context(family, config, params, hp, dataset, x_test_MxD,
                num_samples or config.eval.nll_samples, {} if shared is None else shared, dict(known or {}))
  out: dict[str, Any] = {}
  for evaluate in evaluators_of(family, dataset, bool(config.eval.final_metrics)):
    out.update(evaluate(ctx))
  return out
