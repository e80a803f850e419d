"""End-of-training metrics of a group's runs, one call per run into the evaluator registry
(``aelab.eval.evaluators``, which ``python -m aelab.evaluate`` calls too, so both write the same keys).
"""
from typing import Any, Callable

import jax

from aelab import data
from aelab.eval import evaluators
from aelab.train import hooks
from aelab.train.program import Ahead, Program, Run

Log = Callable[[str], None]


def final_arrays(ahead: Ahead, state: Any, x_test: jax.Array, timer: hooks.Timer) -> dict:
  """The group's end-of-training arrays (``figures.make_final_arrays``, stacked over models) on the host, by
  the final program that ``ahead`` compiled with the others."""
  with timer('compile'):
    final_fn = ahead.get('final', state['params'], x_test)
  with timer('final_eval'):
    return jax.device_get(final_fn(state['params'], x_test))


def last_record(records: dict, history: list[dict], run_dir: str, log: Log) -> dict:
  """A run's metrics of its last epoch: this process's record or metrics.jsonl's; ``{}`` (logged) when that
  record was lost, so that the evaluators compute the test metrics again (and no ``train/*`` remain)."""
  record = records or (history[-1] if history else {})
  if not record:
    log(f'{run_dir}: no metrics of the last epoch; summary.json gets its test metrics computed again and no '
        'train/* metrics.')
  return record


def final_metrics(program: Program, run: Run, dataset: data.Dataset, params: Any, x_test: jax.Array,
                  record: dict, arrays: dict | None, shared: dict, timer: hooks.Timer) -> dict[str, Any]:
  """One run's end-of-training ``test/*`` metrics (``evaluators.final_metrics``) for its ``params`` (one
  model's, no model axis), reusing what training already has: its last ``record``'s test metrics and the
  final program's codes and active units (``arrays``, one model's row). ``shared`` keeps the compiled
  evaluators across the models of the group."""
  known: dict[str, Any] = {'test': {k: v for k, v in record.items() if k.startswith('test/')}} if record else {}
  if arrays is not None:
    known.update(codes=arrays['codes'], active_units=arrays['active_units'])
  with timer('final_eval'):
    return evaluators.final_metrics(program.family, run.config, params, run.hp, dataset, x_test, shared=shared,
                                    known=known)
