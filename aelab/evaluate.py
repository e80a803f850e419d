"""Evaluates a trained run's latest checkpoint and updates its summary.json::

  python -m aelab.evaluate --workdir=runs/vae_mnist [--k=5000]

Recomputes the ``test/*`` metrics that training wrote, from the one registry training uses
(``aelab.eval.evaluators.final_metrics``): the test split's metrics and, with ``eval.final_metrics``,
``test/active_units``, for a VAE ``test/nll`` (the importance-sampled ``-log p(x)`` in nats per example with
``test/nll_k`` samples, Burda et al. 2016; ``--k`` overrides ``eval.nll_samples``), on shapes2d the
disentanglement scores (``test/mig``, ``test/dci_*``, ...), and what the family or data source declares.
``--final_metrics`` adds those to a run trained with ``eval.final_metrics=False``. A SIGINT / SIGTERM ends
in one line (``Stopped by SIGTERM during the evaluation; ...``) and exit status ``128 + signal``, with
summary.json as it was and the workdir's lock released.
"""
from aelab import interrupts

if __name__ == '__main__':
  interrupts.install()  # a signal from now on ends in one line (aelab/interrupts.py), even during the imports

# pylint: disable=wrong-import-position
import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402

from aelab import api, cli, data  # noqa: E402
from aelab.data import stream  # noqa: E402
from aelab.errors import ConfigError  # noqa: E402

from aelab.train import engine  # noqa: E402

from aelab.eval import evaluators  # noqa: E402
from aelab.train.program import on_stored_inputs  # noqa: E402
from aelab.train.workdir import Workdir  # noqa: E402


def evaluate_workdir(workdir: str, num_samples: int | None = None, final_metrics: bool | None = None
                     ) -> dict[str, Any]:
  """Evaluates the latest checkpoint of a finished (or interrupted) run and updates its summary.json.

  Rebuilds the run from ``workdir/config.json`` (``aelab.load``) and writes every key of
  :func:`evaluators.final_metrics` (``k = num_samples`` or ``eval.nll_samples``), as training did; the
  other keys of summary.json (``train/*``, ``num_params``, timings) are kept. It holds the workdir's lock
  meanwhile (as training does), so it never writes into a run that is training. ``final_metrics``
  (default ``eval.final_metrics``) True adds the end-of-training evaluators to a run trained without
  them. Returns the updated summary. Raises FileNotFoundError when the workdir has no config.json or no
  checkpoint, ConfigError for a damaged config.json or a summary.json of a later epoch than the newest
  intact checkpoint, WorkdirBusy (a ConfigError) naming the process that trains in the workdir,
  api.CheckpointError for a checkpoint whose files cannot be read.
  """
  config = api.read_config(workdir)
  out = Workdir(workdir, config)
  with out.locked():  # training holds it while it runs: WorkdirBusy names its process
    dataset = stream.load(config.data)  # a large activations folder streams: its test split alone in memory
    trained = api.load(workdir, dataset)
    summary = _summary_to_update(out, trained.epoch)
    final = _final_metrics(config, dataset, trained, num_samples, final_metrics)
    summary.update(final)
    out.write_summary(summary)
  return summary


def _summary_to_update(out: Workdir, epoch: int) -> dict[str, Any]:
  """summary.json if it is of the checkpoint's ``epoch`` (its ``train/*``, ``num_params`` and timings are
  kept), else ``{'epochs': epoch}`` (no summary, or one of an older epoch). Raises ConfigError when the
  summary is of a later epoch than the newest intact checkpoint: evaluating would replace newer results."""
  summary = out.read_summary()
  if summary is None or not isinstance(summary.get('epochs'), int) or summary['epochs'] < epoch:
    return {'epochs': epoch}
  if summary['epochs'] > epoch:
    raise ConfigError(f'{out.path}/summary.json is of epoch {summary["epochs"]}, but its newest intact checkpoint '
                      f'is of epoch {epoch}: evaluating it would replace newer results. Rerun training with the '
                      'same --workdir to restore that epoch\'s checkpoint, or use summary.json as it is.')
  return summary


def _final_metrics(config, dataset, trained, num_samples, final_metrics) -> dict[str, Any]:
  """The evaluators' metrics of ``trained`` on ``dataset``'s stored test split (as training computes them)."""
  family = on_stored_inputs(trained.family, dataset.to_float32)  # as training evaluates: the stored test split
  hp = engine.make_run(config, dataset.shape).hp
  evaluated = config.copy_and_resolve_references()
  if final_metrics is not None:
    evaluated.eval.final_metrics = final_metrics
  x_test = jax.device_put(data.inputs(dataset, 'test', family.num_classes))  # with labels for a conditional family
  return evaluators.final_metrics(family, evaluated, trained.params, hp, dataset, x_test, num_samples)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m aelab.evaluate', description=evaluate_workdir.__doc__)
  parser.add_argument('--workdir', required=True, help='directory of a training run (config.json, checkpoints/)')
  parser.add_argument('--k', type=int, default=None, help='importance samples for test/nll (default: eval.nll_samples)')
  parser.add_argument('--final_metrics', action='store_true',
                      help='add the end-of-training metrics to a run trained with eval.final_metrics=False')
  parser.add_argument('--debug', action='store_true', help='show the traceback of an error instead of one line')
  args = parser.parse_args(argv)
  interrupts.started()
  if args.k is not None and args.k < 1:
    raise SystemExit(f'error: --k={args.k}: the importance-sampled NLL needs k >= 1 samples; give --k=1 or more '
                     '(or leave it out for eval.nll_samples).')
  with cli.reporting(args.debug, args.workdir, exiting=__name__ == '__main__'):
    try:
      with interrupts.phase('the evaluation'):
        summary = evaluate_workdir(args.workdir, args.k, True if args.final_metrics else None)
    except interrupts.Stopped as e:  # the lock is released and summary.json untouched (written last, atomically)
      if __name__ != '__main__':
        raise
      interrupts.exit_stopped(e, f'Stopped by {signal.Signals(e.signum).name} during {e.during}; '
                              f'{os.path.normpath(args.workdir)}/summary.json is as it was: rerun the same '
                              'command to evaluate.')
    except data.DataError as e:
      raise data.DataError(f'{e} (config.json names the data the run trained on; a relative path, written by an '
                           'older aelab, is read from the current directory)') from e
  shown = ', '.join(f'{k}={v:.4g}' for k, v in summary.items() if k.startswith('test/'))
  print(f'{os.path.normpath(args.workdir)}/summary.json: {shown}', flush=True)


if __name__ == '__main__':
  main()
