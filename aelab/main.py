"""Trains one experiment: ``python -m aelab.main --config=configs/dae.py --workdir=/tmp/dae``.

Flags: ``--config`` (a ``configs/*.py`` file, optionally ``:arg``; fields overridden with
``--config.train.num_epochs=20``) and ``--workdir`` (outputs; a rerun resumes from its checkpoint).
``--config.model.name`` may name another family (its config sections are added with their defaults) or
the dotted path of a family module outside aelab (``my_lab.my_family``, its folder on ``PYTHONPATH``).
``--sweep=configs/sweeps/kl_weight.py[:arg]`` trains every run of that sweep over the config, vectorized
(``aelab/sweep.py``), each in ``<workdir>/<run name>/``; a rerun skips finished runs. A mistake (a bad
flag, config, data file, a full disk) ends in one ``error: ...`` line and exit status 1 (``aelab/cli.py``);
``--debug`` shows the traceback instead.

One process of several (SLURM with several tasks, a multi-host TPU slice, or ``JAX_COORDINATOR_ADDRESS``
with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``) calls ``jax.distributed.initialize()`` first: before
the config file is loaded, since loading it imports aelab modules that already touch the XLA backend.
A process whose peers do not all connect within ``AELAB_DISTRIBUTED_TIMEOUT_S`` (45 s) stops with a
one-line error.
"""
from aelab import interrupts

if __name__ == '__main__':
  interrupts.install()  # a signal from now on ends in one line (aelab/interrupts.py), even during the imports

from aelab.train import parallel  # noqa: E402

if __name__ == '__main__':
  try:
    parallel.initialize_distributed()
  except parallel.DistributedError as e:
    raise SystemExit(f'error: {e}') from None

# pylint: disable=wrong-import-position
import atexit  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from aelab import cli, config as config_lib  # noqa: E402

from aelab.train import engine, sweep, workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/dae.py:mnist.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, figures and summary.json.')
_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file with get_sweep(arg), e.g. configs/sweeps/kl_weight.py.')
_DEBUG = flags.DEFINE_boolean('debug', False, 'Show the traceback of an error instead of one "error: ..." line.')
flags.mark_flags_as_required(['config', 'workdir'])


_FAMILY_OVERRIDES: dict[str, str] = {}  # overrides of the sections of --config.model.name's family


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, where a bad flag, a config file that is missing or fails, or an override of an
  unknown field ends in one ``error: ...`` line (:func:`cli.flag_error`); ``--debug`` shows the traceback.
  Overrides of the sections of a family named by ``--config.model.name`` wait for :func:`main`, which adds
  the sections first (:func:`cli.split_family_overrides`)."""
  argv, overrides = cli.split_family_overrides(argv)
  _FAMILY_OVERRIDES.update(overrides)
  sys.argv[:] = argv  # config_flags reads its overrides from sys.argv
  try:
    remaining = flags.FLAGS(argv)
    _CONFIG.value  # config_flags tells of a config file that failed to load only when it is read
    return remaining
  except Exception as e:
    if cli.debug_requested(argv):
      raise
    raise SystemExit(f'error: {cli.flag_error(e, argv)}') from None


def main(argv: list[str]) -> None:
  interrupts.started()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # keep library INFO logs (orbax) out of the progress lines
    logging.set_verbosity(logging.WARNING)
  workdir, existed = _WORKDIR.value, os.path.exists(_WORKDIR.value)
  try:
    with cli.reporting(_DEBUG.value, workdir, exiting=__name__ == '__main__'):
      workdir_lib.check_path(workdir)
      config = config_lib.with_family(_CONFIG.value)  # the sections of model.name, also when set by a flag
      config = cli.apply_overrides(config, _FAMILY_OVERRIDES)
      if _SWEEP.value:
        summaries = sweep.run_sweep(config, sweep.load(_SWEEP.value), workdir)
        print(f'Done: {len(summaries)} runs in {workdir}/*/summary.json, index in sweep.json.', flush=True)
        return
      summary = _train_single_run(config)
  except (engine.Interrupted, interrupts.Stopped) as e:
    if not existed and isinstance(e, interrupts.Stopped):
      cli.remove_if_only_lock(workdir)  # stopped before anything was written: no workdir holding only a lock
    if isinstance(e, interrupts.Stopped) and __name__ == '__main__':
      interrupts.exit_stopped(e)  # no teardown: a module whose import the signal cut short can crash it
    print(f'{e}', file=sys.stderr, flush=True)
    raise SystemExit(128 + e.signum) from None
  except BaseException:
    if not existed:
      cli.remove_if_empty(workdir)  # a failed start leaves no empty workdir
    raise
  if summary is None:
    return
  shown = ', '.join(f'{k}={v:.4g}' for k, v in summary.items() if k.startswith('test/'))
  print(f'Done in {summary["wall_time_s"]:.1f} s. {workdir}/summary.json: {shown}', flush=True)


def _train_single_run(config) -> dict | None:
  """The run of ``--config``. With several processes only process 0 trains it, on its local devices (every
  process would train the same model into the same workdir); the others return None (independent
  processes at once; those of a jax.distributed job after waiting for it)."""
  if parallel.process_count() == 1:
    return engine.train_and_evaluate(config, _WORKDIR.value)
  try:
    if parallel.process_index() == 0:
      return engine.train_and_evaluate(config, _WORKDIR.value)
    print(f'process {parallel.process_index()} of {parallel.process_count()}: a run without --sweep trains on '
          'process 0 only' + ('; waiting for it' if jax.process_count() > 1 else ''), flush=True)
    return None
  finally:
    parallel.wait_for_other_processes()


if __name__ == '__main__':
  # The objects of the imports live as long as the process: frozen, the collector stops walking them at
  # every full collection (tracing allocates a lot), and at exit (registered first, this runs last) the
  # interpreter's final collection skips everything (5% less CPU time for the main job, paired runs).
  gc.freeze()
  atexit.register(gc.freeze)
  app.run(main, flags_parser=parse_flags)
