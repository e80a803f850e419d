"""The contract of a model family (a plugin): one module that says everything about itself.

A family module (``aelab/models/ae.py``, ``vae.py``, ... or a user's module named by its dotted path,
``model.name=my_lab.my_family``) defines:

- ``SECTION``: the name of its own config section (``config.<SECTION>``), or None for none.
- ``CONFIG``: ``{field: (default, meaning)}``, the fields of that section, each default with a one-line
  meaning (and unit); ``{}`` without a section.
- ``BUILDS_ON`` (optional, default ``()``): the families it extends (``('vae',)``); their sections are
  added to its configs and their ``validate`` runs before its own.
- ``PENALTIES`` (optional, default ``('none', 'l1')``): the ``penalty.name`` values its objective
  defines.
- ``LIKELIHOODS`` (optional, default all of ``common.LIKELIHOODS``): the ``model.likelihood`` values it
  accepts (a VAE's ELBO needs a normalized one: ``('bernoulli', 'gaussian')``); a family built on another
  accepts only what both accept.
- ``validate(config) -> None``: checks the family's fields (and what it needs of the base config);
  raises ``aelab.errors.ConfigError`` naming the field and what is allowed.
- ``HYPERPARAMS``: ``{hp key: dotted config field}``, the traced hyperparameters its pure functions read
  from ``hp`` (the fields a sweep may vary within one compiled program).
- ``family(config, data_shape) -> Family``: the functions bound to one model (below).

The engine, the metrics and the figures use only what the ``Family`` holds: no attribute probing of
modules. ``aelab.models`` loads a module and checks this contract (:data:`REQUIRED`).
"""
import dataclasses
from typing import Any, Callable

import jax

Params = Any
Hyperparams = dict[str, jax.Array]

# hp key -> dotted config field, e.g. {'kl_weight': 'vae.kl_weight'}.
HyperparamFields = dict[str, str]

# field -> (default, one-line meaning): a config section as data (a family's CONFIG, the base config).
Section = dict[str, tuple[Any, str]]

# What every family module defines (the optional BUILDS_ON, PENALTIES and LIKELIHOODS have defaults).
REQUIRED = ('SECTION', 'CONFIG', 'validate', 'HYPERPARAMS', 'family')
DEFAULT_PENALTIES = ('none', 'l1')

# Every family's objective reads the corruption and penalty hyperparameters.
COMMON_HYPERPARAMS: HyperparamFields = {
    'penalty_weight': 'penalty.weight',
    'sparsity_target': 'penalty.target',
    'corruption_std': 'corruption.std',
    'corruption_rate': 'corruption.rate',
}


@dataclasses.dataclass(frozen=True)
class Family:
  """What one model family provides for one config and data shape.

  Shapes: ``x_BxD`` flattened examples, ``z_BxZ`` codes, ``hp`` the traced hyperparameters (float32
  scalars, the keys of the module's ``HYPERPARAMS``). Exactly one of ``objective`` and ``make_update``
  is set.

  Attributes:
    model: the flax module(s).
    init: ``(key, x_1xD) -> params``.
    eval: ``(params, x_BxD, key, hp) -> {name: per-example metric, shape B}``.
    reconstruct: ``(params, x_BxD, key, hp) -> (x_tilde_BxD, x_hat_BxD)``: corrupted input and
      reconstruction mean.
    encode: ``(params, x_BxD) -> z_BxZ``: the code (a VAE's posterior mean).
    decode: ``(params, z_BxZ) -> x_BxD``: the likelihood mean ``E[x|z]``.
    objective: ``(params, x_BxD, key, hp) -> (scalar loss, metrics)``, minimized by ``config.optimizer``.
    make_update: ``(tx) -> (init_opt_state(params), train_step(state, x_BxD, key, hp))`` for a family with
      its own update (the AAE: several optimizers); ``tx`` is ``config.optimizer``'s transformation.
    sample: ``(params, key, num) -> x_NxD``: means of decoded prior samples (generative families).
    log_weights: ``(params, x_BxD, key, k, hp=None) -> log_w_KxB``: importance log-weights, nats.
    sample_prior: ``(key, num) -> z_NxZ``: samples of the prior ``p(z)``.
    split_eval: ``(params, x_MxD, hp) -> {name: scalar}``: metrics of a whole split that are not means of
      per-example values (a VQ-VAE's codebook perplexity, an SAE's dead fraction); logged with ``eval``'s
      as ``test/<name>``.
    evaluators: end-of-training evaluators of this family beside the registry's
      (``aelab.eval.evaluators``): each ``(context) -> {'test/<name>': value}``, run by training and by
      ``python -m aelab.evaluate`` alike when ``eval.final_metrics`` is on.
    num_classes: ``C > 0`` for a conditional family (``cvae``), which takes class labels with its examples:
      wherever the others take ``x_BxD`` (objective, eval, reconstruct, encode, log_weights) it takes an
      ``aelab.data.Labeled(x_BxD, y_B)`` pair (``y`` int32 class ids in ``[0, C)``; ``init`` takes ``x_1xD``
      alone), and ``decode(params, z_BxZ, y_B)``, ``sample(params, key, num, y_N)`` take the labels to decode
      with. The engine builds the pairs only for such a family (the others' programs get no labels), and
      refuses data without labels. 0: unconditional.
  """
  model: Any
  init: Callable[[jax.Array, jax.Array], Params]
  eval: Callable
  reconstruct: Callable
  encode: Callable
  decode: Callable
  objective: Callable | None = None
  make_update: Callable | None = None
  sample: Callable | None = None
  log_weights: Callable | None = None
  sample_prior: Callable | None = None
  split_eval: Callable | None = None
  evaluators: tuple[Callable, ...] = ()
  num_classes: int = 0

  def __post_init__(self):
    if (self.objective is None) == (self.make_update is None):
      raise TypeError('A Family provides exactly one of objective and make_update.')
