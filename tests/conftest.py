"""Shared helpers: small configs on the bundled digits, and the real MNIST folder when it exists.

Every test runs with ``jax_numpy_rank_promotion='raise'``, so that arrays named by their shapes
(``z_BxZ``) meet only arrays of the same rank unless a test or the code broadcasts on purpose.
"""
import importlib
import os
import pathlib
import re
import sys
import tempfile

# The suite's runs are tiny, so compiling them is nearly all of its time: XLA's CPU backend at optimization
# level 0 compiles them in about half the CPU time, to the same numbers within float32 rounding, and with
# XLA's older (non-MLIR) fusion emitters in about half again (the suite: 426 s -> 292 s cold on 2 cores; the
# main job's metrics are bit for bit the same with either emitter), and with LLVM's code generation in one
# piece instead of split over threads, about 10% less again (a third of the suite: 60 s -> 54 s). Set here,
# before any backend starts, they reach the tests' subprocesses too (they inherit os.environ).
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
if 'xla_cpu_use_fusion_emitters' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_cpu_use_fusion_emitters=false'
if 'xla_cpu_parallel_codegen_split_count' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_cpu_parallel_codegen_split_count=1'

import jax  # noqa: E402
import pytest

from aelab import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / 'shared' / 'data' / 'mnist'
CONFIG_NAMES = ('ae', 'deep_ae', 'sparse', 'dae', 'vae')

jax.config.update('jax_numpy_rank_promotion', 'raise')
# One persistent compilation cache for the whole suite (and its subprocesses): the many small runs of the
# same configs compile once.
CACHE_DIR = os.environ.setdefault('AELAB_TEST_CACHE', os.path.join(tempfile.gettempdir(), 'aelab-test-jax-cache'))


def forget_modules(package: str) -> None:
  """Drops ``package`` and its submodules from ``sys.modules``, so that a test's own ``my_lab`` folder (a
  user's plugin package) is imported from its path, not from another test's folder seen earlier in the same
  worker process."""
  for name in [m for m in sys.modules if m == package or m.startswith(package + '.')]:
    del sys.modules[name]
  importlib.invalidate_caches()


def load_config(name: str, arg: str | None = None):
  """``configs/<name>.py``'s ``get_config(arg)``, as ``--config=configs/<name>.py:arg`` would load it."""
  config = config_lib.load(str(ROOT / 'configs' / f'{name}.py') + (f':{arg}' if arg else ''))
  config.train.compilation_cache_dir = CACHE_DIR
  return config


def small(config, epochs: int = 3):
  """Few epochs, no figures, a 100-sample NLL: fast enough for the test suite."""
  config.train.update(num_epochs=epochs, figures_every=0)
  config.eval.nll_samples = 100
  return config


@pytest.fixture
def mnist_dir():
  if not (MNIST_DIR / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'real MNIST not found at {MNIST_DIR}')
  return str(MNIST_DIR)




def _shared_tests(path: pathlib.Path) -> set[str]:
  """The tests of one file that name a module-scoped fixture of that file among their arguments."""
  text = path.read_text()
  fixtures = set(re.findall(r"@pytest\.fixture\(scope='module'\)\ndef (\w+)", text))
  return {name for name, args in re.findall(r'^def (test_\w+)\(([^)]*)\)', text, re.MULTILINE)
          if fixtures & set(re.findall(r'\w+', args))}


SHARED = {p.stem: _shared_tests(p) for p in pathlib.Path(__file__).parent.glob('test_*.py')}


def unit(nodeid: str) -> str:
  """What an xdist worker is handed at once: all the tests of a file that share its module-scoped fixtures
  (so each fixture is built once, on one worker), or else one test."""
  path, _, name = nodeid.partition('::')
  module = pathlib.PurePath(path).stem
  return f'{path}::shared' if name.split('[')[0] in SHARED.get(module, ()) else nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist
def pytest_xdist_make_scheduler(config, log):
  """'--dist loadscope' (setup.cfg) with unit() as its scope: the tests spread over the workers one by one,
  not file by file, except those that share a fixture."""
  if config.getvalue('dist') != 'loadscope':
    return None
  from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415

  class Scheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
      return unit(nodeid)

  return Scheduling(config, log)


# Known slow tests and units (named as rank() names them), handed out to the workers first so that no long
# one starts last while the other worker idles; the others follow in file order.
SLOW_FIRST = (
    'test_sweep::shared', 'test_sources::shared',
    'test_multiprocess::test_two_processes_split_three_runs_unevenly_with_the_numbers_of_one_process',
    'test_plugins::shared', 'test_main::test_sigterm_saves_exits_with_its_status_and_the_rerun_resumes',
    'test_evaluate::test_evaluate_writes_the_test_keys_training_wrote', 'test_precision::shared',
    'test_stream::shared', 'test_vqvae::test_first_step_initialises_the_codebook_from_encoder_outputs',
    'test_vqvae::test_vqvae_trains_on_digits_and_reports_codebook_usage', 'test_models::test_conv_vae_trains_on_digits',
    'test_models::test_aae_codes_move_toward_the_gaussian_prior', 'test_evaluate::shared',
    'test_precision::test_bfloat16_nets_keep_float32_params_and_outputs',
    'test_precision::test_bfloat16_matmuls_train_like_float32',
    'test_writers::test_mlflow_run_holds_one_value_per_epoch_equal_to_metrics_jsonl_and_the_config_as_params',
    'test_config::test_command_line_override_reaches_the_run',
    'test_plugins::test_model_name_changed_on_the_command_line_gets_the_family_sections',
    'test_engine::test_denoising_vae_and_denoising_sparse_ae_train',
    'test_disentanglement::test_run_on_shapes2d_writes_the_metrics', 'test_disentanglement_sources::shared',
    'test_disentanglement_sources::test_the_command_line_names_a_malformed_file',
    'test_config::test_command_line_rejects_unknown_field_and_bad_value',
    'test_figures::test_figures_of_a_generative_run',
    'test_launch::test_launcher_runs_groups_as_local_jobs_and_skips_finished_runs',
    'test_engine::test_optimizers_and_schedules_train', 'test_engine::shared', 'test_metrics::shared',
    'test_pretrain::shared',
)


def pytest_collection_modifyitems(config, items):
  """Known slow ones first (each unit stays in file order: the sort is stable)."""
  def rank(item):
    module = item.module.__name__
    name = f'{module}::shared' if item.originalname in SHARED.get(module, ()) else f'{module}::{item.originalname}'
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

  items.sort(key=rank)
