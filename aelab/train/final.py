"""End-of-training metrics of a group's runs (``eval.final_metrics``), one call per run
(:func:`final_metrics`): active units of the test codes, the importance-sampled test NLL (families with
log-weights), the disentanglement scores (data with factors).
"""
from typing import Any, Callable

import jax

from aelab import data
from aelab.eval import metrics
from aelab.train import hooks
from aelab.train.program import Program, Run

Log = Callable[[str], None]


def final_arrays(program: Program, state: Any, x_test: jax.Array, timer: hooks.Timer) -> dict:
  """The group's end-of-training arrays (``figures.make_final_arrays``, stacked over models) on the host."""
  with timer('compile'):
    final_fn = program.final.lower(state['params'], x_test).compile()
  with timer('final_eval'):
    return jax.device_get(final_fn(state['params'], x_test))


def final_evaluators(program: Program, run: Run, dataset: data.Dataset) -> list[Callable]:
  """The end-of-training metrics of the group's runs beyond active units, each ``evaluate(params,
  x_test) -> {test/...: value}``: the importance-sampled test NLL (families with log-weights) and the
  disentanglement scores (data with factors). Built once per group (each compiles once)."""
  found = []
  if run.family.log_weights is not None:
    found.append(metrics.make_test_nll(program.family, run.config))
  disent = metrics.make_disentanglement(run.family, run.config, dataset.extras)
  if disent is not None:
    found.append(lambda params, x_test: disent(params))
  return found


def final_metrics(evaluators: list[Callable], params: Any, arrays: dict, x_test: jax.Array,
                  timer: hooks.Timer) -> dict[str, float]:
  """One run's end-of-training metrics (``eval.final_metrics``): ``test/active_units`` and those of
  ``evaluators`` (:func:`final_evaluators`) for its ``params`` (one model's, no model axis)."""
  found: dict[str, float] = {'test/active_units': int(arrays['active_units'])}
  with timer('final_eval'):
    for evaluate in evaluators:
      found.update(evaluate(params, x_test))
  return found


def test_metrics_again(program: Program, run: Run, run_dir: str, params: Any, x_test: jax.Array,
                       log: Log) -> dict[str, float]:
  """One model's test metrics (``params`` without the model axis), computed again: for a summary whose
  epoch's record of metrics.jsonl was lost (its ``train/*`` metrics cannot be recovered)."""
  evaluate = metrics.make_evaluate(program.family.eval, run.config.train.eval_batch_size, program.family.split_eval)
  log(f'{run_dir}: no metrics of the last epoch; summary.json gets its test metrics computed again and no '
      'train/* metrics.')
  return {f'test/{k}': float(v) for k, v in evaluate(params, x_test, run.hp).items()}
