"""Training throughput of the VAE and the DAE, against the machine's float32 matmul peak (and PyTorch).

  python experiments/bench.py            # a table
  python experiments/bench.py --json     # the table, then one JSON line
  python experiments/bench.py --only_sweep --sweep_models=64 --json    # the sweep benchmark alone
  python experiments/bench.py --whole_process --rounds=3 --json        # aelab vs PyTorch, whole processes
  python experiments/bench.py --stream --json      # streamed vs in-memory epoch; peak RSS of a 1M-image epoch
  python experiments/bench.py --model_axis --sweep_models=64 --dtypes=float32,bfloat16   # K models vs one

Times whole epochs of the jitted, scanned train step after compilation, on random data (speed does not
depend on the values): the VAE 784-400-20 (ReLU, Bernoulli likelihood, Adam, batch 128) and the DAE
784-512-128-32 and mirror (ReLU, Gaussian corruption, Adam, batch 128). FLOPs per example count the
matmuls of the forward pass and twice that for the backward pass (3.9 MFLOP VAE, 5.65 MFLOP DAE).
Where PyTorch is installed it also times the same VAE written in plain PyTorch, alternating the two,
and reports the median of the rounds.

The sweep benchmark trains ``--sweep_models`` VAEs (``configs/vae.py`` on the real MNIST test images of
``../shared/data/mnist``, split 8,000 / 2,000; KL weights x seeds) for ``--sweep_epochs`` epochs, end to
end with every run's outputs (metrics, checkpoints, summary, final figures): once as one vectorized
sweep (``aelab.train.sweep.run_sweep``) and once one after another (``engine.train_and_evaluate`` each, as
separate commands would). Wall times include compilation; model-examples/s counts training examples of
all models. Without the MNIST folder it falls back to the bundled digits (``sweep_data`` says which).

``--whole_process`` times whole processes instead, wall clock from launch to exit (interpreter start-up,
imports, data loading, compilation and outputs included), alternating in each of ``--rounds`` rounds (the
order swapped every other round): ``experiments/torch_vaes.py`` (the 8 VAEs of
``configs/sweeps/kl_weight.py:seeds=1``, one after another, in a bare PyTorch process; skipped where torch
is not importable) and aelab's vectorized sweep of the same 8 VAEs (``python -m aelab.main
--config=configs/vae.py:idx=../shared/data/mnist --sweep=configs/sweeps/kl_weight.py:seeds=1`` with batch
128, 3 epochs, no figures, no final metrics; a fresh workdir each round). It reports each command's min /
median / max wall seconds, model-examples per second of the median wall time (models x epochs x the
examples of an epoch's full batches) and the ratio aelab / PyTorch (> 1: aelab faster). ``--cache``
picks JAX's persistent compilation cache of the aelab runs: ``none`` (no cache flag), ``cold`` (a fresh
empty ``--config.train.compilation_cache_dir`` each round) or ``warm`` (one directory for all rounds,
primed by an untimed run); ``cold`` and ``warm`` need the ``train.compilation_cache_dir`` config field.
Needs the MNIST folder.

``--model_axis`` times the compiled epoch of the engine (``engine.Program``: a scanned epoch of training
plus the test metrics, data on the device as uint8) for one VAE and for ``--sweep_models`` VAEs on the
model axis (the KL weights x seeds above; ``configs/vae.py`` on the MNIST test images, batch 128), after
compilation and one untimed epoch, alternating the two in each of ``--rounds`` rounds, for each of
``--dtypes`` (``model.dtype``).
It reports the median epoch's model-examples/s (models x the examples of an epoch's full batches / seconds)
of each and their ratio: how much more work per second the model axis gets out of the device.
"""
import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import common  # experiments/common.py, beside this file
import jax
import jax.numpy as jnp

from aelab import config as aelab_config
from aelab import data, models
from aelab.train import engine, optimizers, sweep

BATCH = 128
D = 784


def matmul_flops_per_example(widths: list[int]) -> float:
  """Forward + backward FLOPs of an MLP chain with these widths: 3 x 2 x sum(d_in * d_out)."""
  return 3 * 2 * sum(a * b for a, b in itertools.pairwise(widths))


def peak_gflops(n: int = 2048, repeats: int = 10) -> float:
  """Best float32 GFLOP/s of an ``n x n`` matmul, jitted, on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda a, b: a @ b)
  matmul(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best / 1e9


def vae_config():
  config = aelab_config.base('vae')
  config.model.update(hidden=(400,), latent_dim=20, activation='relu', likelihood='bernoulli')
  config.train.batch_size = BATCH
  return config


def dae_config():
  config = aelab_config.base('ae')
  config.model.update(hidden=(512, 128), latent_dim=32, activation='relu', likelihood='bernoulli')
  config.corruption.update(name='gaussian', std=0.5)
  config.train.batch_size = BATCH
  return config


class JaxTrainer:
  """A compiled epoch of ``steps`` train steps on random binary data."""

  def __init__(self, config, steps: int):
    family = models.get(config, D)
    tx = optimizers.make_optimizer(config.optimizer, steps)
    step = optimizers.make_train_step(family.objective, tx)
    self.epoch = engine.make_train_epoch(step, BATCH, dynamic_binarize=False)
    self.x = jax.random.bernoulli(jax.random.key(1), 0.13, (steps * BATCH, D)).astype(jnp.float32)
    params = family.init(jax.random.key(0), self.x[:1])
    self.state = {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params)}
    self.hp = {k: jnp.asarray(v, jnp.float32) for k, v in models.hyperparams(config).items()}
    self.examples = steps * BATCH
    self.run()  # compile

  def run(self) -> float:
    """Trains one epoch; returns examples per second."""
    t0 = time.perf_counter()
    self.state, metrics = self.epoch(self.state, self.x, jax.random.key(2), self.hp)
    jax.block_until_ready((self.state, metrics))
    return self.examples / (time.perf_counter() - t0)


def torch_vae_trainer(steps: int):
  """The same VAE in plain PyTorch (eager, Adam); returns ``run() -> examples/s`` or None without torch."""
  try:
    import torch
  except ImportError:
    return None
  torch.manual_seed(0)
  enc, mu_lv = torch.nn.Linear(D, 400), torch.nn.Linear(400, 40)
  dec1, dec2 = torch.nn.Linear(20, 400), torch.nn.Linear(400, D)
  params = [p for m in (enc, mu_lv, dec1, dec2) for p in m.parameters()]
  opt = torch.optim.Adam(params, lr=1e-3)
  x_all = (torch.rand(steps * BATCH, D) < 0.13).float()

  def step(x):
    mean, log_var = mu_lv(torch.relu(enc(x))).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    logits = dec2(torch.relu(dec1(z)))
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1)
    kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(-1)
    loss = (recon + kl).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  def run() -> float:
    perm = torch.randperm(len(x_all))
    t0 = time.perf_counter()
    for i in range(steps):
      loss = step(x_all[perm[i * BATCH:(i + 1) * BATCH]])
    loss.item()
    return steps * BATCH / (time.perf_counter() - t0)

  run()  # warm up
  return run


def _sweep_config(epochs: int):
  root = pathlib.Path(__file__).resolve().parents[1]
  mnist = root.parent / 'shared' / 'data' / 'mnist'
  config = common.load_config('vae', f'idx={mnist}' if mnist.is_dir() else None)
  config.train.update(num_epochs=epochs, figures_every=0)
  config.eval.final_metrics = False  # as the benchmark: no end-of-training NLL
  return config


def _sweep_overrides(num_models: int) -> list[dict]:
  """``num_models`` override dicts: KL weights 0.5, 1, 2, 4 x seeds 0, 1, ..."""
  weights = [0.5, 1.0, 2.0, 4.0]
  return sweep.product(sweep.axis('vae.kl_weight', weights),
                       sweep.axis('seed', range(-(-num_models // len(weights)))))[:num_models]


def _compiled_epoch(config, overrides: list[dict], dataset: data.Dataset) -> tuple[Callable, tuple]:
  """``(epoch_fn, args)``: the group's compiled epoch and its arguments on the devices (epoch 1)."""
  runs = [engine.make_run(sweep.apply(config, o), dataset.shape) for o in overrides]
  p = engine.Program(runs, dataset)
  keys = jnp.stack([r.init_key for r in runs])
  state = p.init(keys, jnp.full(len(runs), config.optimizer.learning_rate, jnp.float32))
  x_train, x_test = p.replicate((dataset.train, dataset.test))
  args = (state, x_train, x_test, None, 1, p.shard(jnp.stack([r.train_key for r in runs])),
          p.shard(engine.stack([r.hp for r in runs])))
  return p.epoch.lower(*args).compile(), args


def model_axis_benchmark(num_models: int, rounds: int, dtypes: list[str], max_train_examples: int | None = None
                         ) -> dict:
  """Median epoch seconds and model-examples/s of 1 and ``num_models`` VAEs on the model axis (docstring), on
  at most ``max_train_examples`` training examples (None: all)."""
  config = _sweep_config(1)
  config.train.batch_size = BATCH
  config.data.max_train_examples = max_train_examples or 0
  dataset = data.load(config.data)
  examples = len(dataset.train) // BATCH * BATCH
  result = {'axis_models': num_models, 'axis_data': f'{config.data.name} ({examples} training examples per epoch)',
            'axis_device': str(jax.devices()[0]), 'axis_devices': jax.local_device_count(), 'axis_rounds': rounds,
            'jax_version': jax.__version__}
  for dtype in dtypes:
    config.model.dtype = dtype
    compiled = {k: _compiled_epoch(config, _sweep_overrides(k), dataset) for k in (1, num_models)}
    for k, (fn, args) in compiled.items():  # an untimed first epoch: first-execution costs on neither side
      compiled[k] = fn, (jax.block_until_ready(fn(*args))[0], *args[1:])  # blocked: not in the next timing
    seconds = {k: [] for k in compiled}
    for r in range(rounds):
      for k in (1, num_models) if r % 2 == 0 else (num_models, 1):
        fn, args = compiled[k]
        t0 = time.perf_counter()
        state, out = fn(*args)
        jax.block_until_ready((state, out))
        seconds[k].append(time.perf_counter() - t0)
        compiled[k] = fn, (state, *args[1:])
    for k, name in ((1, 'one'), (num_models, 'axis')):
      median = statistics.median(seconds[k])
      result[f'{dtype}_{name}_epoch_s'] = median
      result[f'{dtype}_{name}_model_examples_per_s'] = k * examples / median
    result[f'{dtype}_axis_gain'] = (result[f'{dtype}_axis_model_examples_per_s']
                                    / result[f'{dtype}_one_model_examples_per_s'])
  return result


def _print_model_axis(result: dict, dtypes: list[str]) -> None:
  n = result['axis_models']
  print(f'VAE 784-400-20, batch {BATCH}, on {result["axis_data"]}; {result["axis_device"]} '
        f'({result["axis_devices"]} device(s)), jax {result["jax_version"]}; median of {result["axis_rounds"]} '
        'compiled epochs (training + test metrics):')
  print(f'{"model.dtype":<12}{"models":>7}{"epoch s":>10}{"model-examples/s":>18}{"vs one model":>14}')
  for dtype in dtypes:
    for k, name in ((1, 'one'), (n, 'axis')):
      gain = result[f'{dtype}_axis_gain'] if k > 1 else 1.0
      print(f'{dtype:<12}{k:>7}{result[f"{dtype}_{name}_epoch_s"]:>10.2f}'
            f'{result[f"{dtype}_{name}_model_examples_per_s"]:>18,.0f}{gain:>13.2f}x')


def sweep_benchmark(num_models: int, epochs: int) -> dict:
  """Wall time of ``num_models`` VAEs as one vectorized sweep and one after another (see the docstring)."""
  config = _sweep_config(epochs)
  overrides = _sweep_overrides(num_models)
  examples = len(data.load(config.data).x_train) // config.train.batch_size * config.train.batch_size
  with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    warm_up = _sweep_config(1)  # first-use costs (imports, font cache) would otherwise fall on one side
    warm_up.data.update(name='digits', path=None, max_train_examples=64)
    engine.train_and_evaluate(warm_up, os.path.join(tmp, 'warm_up'))
    t0 = time.perf_counter()
    for run in overrides:
      engine.train_and_evaluate(sweep.apply(config, run), os.path.join(tmp, 'one_by_one', sweep.run_name(run)))
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep.run_sweep(config, overrides, os.path.join(tmp, 'sweep'), log=lambda line: None)
    vectorized = time.perf_counter() - t0
  model_examples = num_models * epochs * examples
  return {f'sweep{num_models}_wall_s': vectorized, f'sequential{num_models}_wall_s': sequential,
          'sweep_speedup': sequential / vectorized, 'sweep_model_examples_per_s': model_examples / vectorized,
          'sequential_model_examples_per_s': model_examples / sequential, 'sweep_models': num_models,
          'sweep_epochs': epochs, 'sweep_data': f'{config.data.name} ({examples} training examples per epoch)',
          'sweep_devices': jax.local_device_count()}


REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST = REPO.parent / 'shared' / 'data' / 'mnist'
WHOLE_SWEEP = 'configs/sweeps/kl_weight.py:seeds=1'  # the 8 KL weights of torch_vaes.py, seed 0
WHOLE_EPOCHS = 3  # torch_vaes.py's default
CACHE_FIELD = 'compilation_cache_dir'  # train.<CACHE_FIELD>: not in aelab's config yet (see whole_process)


def aelab_sweep_command(workdir: str, extra_flags: list[str]) -> list[str]:
  """``python -m aelab.main`` training the sweep ``WHOLE_SWEEP`` into ``workdir``, then ``extra_flags``."""
  return [sys.executable, '-m', 'aelab.main', f'--config=configs/vae.py:idx={MNIST}', f'--sweep={WHOLE_SWEEP}',
          f'--config.train.batch_size={BATCH}', f'--config.train.num_epochs={WHOLE_EPOCHS}',
          '--config.train.figures_every=0', '--config.eval.final_metrics=False', f'--workdir={workdir}',
          *extra_flags]


def torch_command() -> list[str] | None:
  """``python experiments/torch_vaes.py``, or None where torch is not importable."""
  if importlib.util.find_spec('torch') is None:
    return None
  return [sys.executable, str(REPO / 'experiments' / 'torch_vaes.py'), f'--epochs={WHOLE_EPOCHS}',
          f'--batch_size={BATCH}']


def cache_flags(cache_dir: str) -> list[str]:
  """The aelab flag that points JAX's persistent compilation cache at ``cache_dir``."""
  return [f'--config.train.{CACHE_FIELD}={cache_dir}']


def timed_process(command: list[str]) -> tuple[float, str]:
  """Runs ``command`` from the repository root; returns (wall seconds from launch to exit, stdout).
  Exits with the command's stderr tail when it fails."""
  t0 = time.perf_counter()
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - t0
  if proc.returncode != 0:
    tail = '\n'.join(proc.stderr.splitlines()[-25:])
    raise SystemExit(f'error: exit status {proc.returncode} after {wall:.1f} s from\n  {shlex.join(command)}\n'
                     f'stderr (last lines):\n{tail}')
  return wall, proc.stdout


def whole_process_work() -> tuple[int, int]:
  """(models, training examples per epoch and model): the sweep's runs, and the full batches of ``BATCH``
  of the training split that ``configs/vae.py`` makes of the MNIST folder (8,000 -> 62 x 128 = 7,936)."""
  config = common.load_config('vae', f'idx={MNIST}')
  models = len(sweep.load(str(REPO / WHOLE_SWEEP)))
  return models, len(data.load(config.data).x_train) // BATCH * BATCH


def check_cache_field(cache: str) -> None:
  """Exits with an explanation when ``--cache`` needs ``train.compilation_cache_dir`` and aelab lacks it."""
  if cache != 'none' and CACHE_FIELD not in common.load_config('vae').train:
    raise SystemExit(f'error: --cache={cache} passes --config.train.{CACHE_FIELD}=DIR, a config field aelab '
                     'does not have yet; use --cache=none until it lands.')


def _round_commands(cache: str, warm_dir: str | None, tmp: str, r: int) -> list[tuple[str, list[str]]]:
  """Round ``r``'s commands, (name, command), PyTorch first in even rounds, aelab first in odd ones."""
  extra = []
  if cache == 'cold':
    extra = cache_flags(tempfile.mkdtemp(prefix=f'cache{r}_', dir=tmp))
  elif cache == 'warm':
    extra = cache_flags(warm_dir)
  commands = [('aelab', aelab_sweep_command(tempfile.mkdtemp(prefix=f'workdir{r}_', dir=tmp), extra))]
  if torch_command():
    commands.insert(0, ('torch', torch_command()))
  return commands if r % 2 == 0 else commands[::-1]


def whole_process_benchmark(rounds: int, cache: str) -> dict:
  """Wall times of whole processes: PyTorch's 8 VAEs one after another and aelab's sweep (see the docstring).

  ``cache``: 'none' passes no cache flag (the default while ``train.compilation_cache_dir`` does not exist);
  'cold' a fresh empty cache directory each round; 'warm' one directory for all rounds, primed by an untimed
  aelab run. 'cold' and 'warm' only work once aelab's config has that field (``check_cache_field``)."""
  if not MNIST.is_dir():
    raise SystemExit(f'error: --whole_process needs the MNIST folder {MNIST}.')
  check_cache_field(cache)
  if cache == 'none' and os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    print(f'warning: JAX_COMPILATION_CACHE_DIR={os.environ["JAX_COMPILATION_CACHE_DIR"]} is set: the aelab '
          'runs may use that persistent cache.', file=sys.stderr)
  models, examples = whole_process_work()
  model_examples = models * WHOLE_EPOCHS * examples
  walls = {'torch': [], 'aelab': []}
  with tempfile.TemporaryDirectory(prefix='bench_whole_') as tmp:
    warm_dir = tempfile.mkdtemp(prefix='cache_warm_', dir=tmp) if cache == 'warm' else None
    if warm_dir:  # untimed: fills the cache the timed rounds read
      timed_process(aelab_sweep_command(tempfile.mkdtemp(prefix='workdir_prime_', dir=tmp), cache_flags(warm_dir)))
    for r in range(rounds):
      for name, command in _round_commands(cache, warm_dir, tmp, r):
        wall, stdout = timed_process(command)
        walls[name].append(wall)
        if name == 'torch':
          _check_torch_work(stdout, model_examples)
      print(f'  round {r + 1}: ' + ', '.join(f'{n} {w[-1]:.1f} s' for n, w in walls.items() if w), flush=True)
  result = {'whole_models': models, 'whole_epochs': WHOLE_EPOCHS, 'whole_examples_per_epoch': examples,
            'whole_model_examples': model_examples, 'whole_rounds': rounds, 'whole_cache': cache,
            'whole_torch_skipped': not walls['torch']}
  for name, w in walls.items():
    if w:
      result.update({f'{name}_wall_s': w, f'{name}_min_s': min(w), f'{name}_median_s': statistics.median(w),
                     f'{name}_max_s': max(w), f'{name}_model_examples_per_s': model_examples / statistics.median(w)})
  if walls['torch']:
    result['aelab_vs_torch'] = result['aelab_model_examples_per_s'] / result['torch_model_examples_per_s']
  return result


def _check_torch_work(stdout: str, model_examples: int) -> None:
  """Warns when torch_vaes.py's JSON line reports other work than aelab's sweep does."""
  reported = json.loads(stdout.strip().splitlines()[-1])['model_examples']
  if reported != model_examples:
    print(f'warning: torch_vaes.py trained {reported:,} model-examples, aelab {model_examples:,}.', file=sys.stderr)


def _print_whole_process(result: dict) -> None:
  print(f'{result["whole_models"]} VAEs x {result["whole_epochs"]} epochs x {result["whole_examples_per_epoch"]:,} '
        f'examples = {result["whole_model_examples"]:,} model-examples, whole processes, {result["whole_rounds"]} '
        f'round(s), compilation cache: {result["whole_cache"]}')
  print(f'{"command":<32}{"min s":>8}{"median s":>10}{"max s":>8}{"model-examples/s":>18}')
  for name, label in (('torch', 'PyTorch, one after another'), ('aelab', 'aelab, one vectorized sweep')):
    if f'{name}_median_s' in result:
      print(f'{label:<32}{result[f"{name}_min_s"]:>8.1f}{result[f"{name}_median_s"]:>10.1f}'
            f'{result[f"{name}_max_s"]:>8.1f}{result[f"{name}_model_examples_per_s"]:>18,.0f}')
    else:
      print(f'{label:<32}  skipped (torch is not importable)')
  if 'aelab_vs_torch' in result:
    print(f'aelab / PyTorch model-examples/s: {result["aelab_vs_torch"]:.2f}x (> 1: aelab faster)')



def _report(result: dict, print_table, as_json: bool) -> None:
  """Prints ``result`` as a table (``print_table``), then as one JSON line with ``--json``."""
  print_table(result)
  if as_json:
    print(json.dumps(result))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--json', action='store_true', help='print one final JSON line with the numbers')
  parser.add_argument('--steps', type=int, default=200, help='train steps per timed epoch')
  parser.add_argument('--rounds', type=int, default=3, help='alternating timed rounds (median reported)')
  parser.add_argument('--sweep_models', type=int, default=8, help='models of the sweep benchmark')
  parser.add_argument('--sweep_epochs', type=int, default=3, help='epochs of each model in the sweep benchmark')
  parser.add_argument('--no_sweep', action='store_true', help='skip the sweep benchmark')
  parser.add_argument('--only_sweep', action='store_true', help='run only the sweep benchmark')
  parser.add_argument('--whole_process', action='store_true',
                      help='time whole processes: PyTorch one after another vs the aelab sweep (see above)')
  parser.add_argument('--stream', action='store_true',
                      help='streaming input against the in-memory epoch, and the peak memory of one streamed epoch '
                      'on 1,000,000 28x28 images written to /tmp (experiments/bench_stream.py)')
  parser.add_argument('--cache', choices=('none', 'cold', 'warm'), default='none',
                      help='--whole_process: JAX compilation cache of the aelab runs (cold/warm need '
                      'train.compilation_cache_dir)')
  parser.add_argument('--model_axis', action='store_true',
                      help='time the compiled epoch of one VAE and of --sweep_models VAEs on the model axis')
  parser.add_argument('--dtypes', default='float32', help='--model_axis: comma-separated model.dtype values')
  args = parser.parse_args()

  if args.stream:
    import bench_stream  # noqa: PLC0415  (experiments/bench_stream.py, beside this file)
    return _report(bench_stream.run(args.rounds, pathlib.Path('/tmp/aelab_stream_1m.npz'), 1_000_000),
                   bench_stream.report, args.json)
  if args.model_axis:
    dtypes = args.dtypes.split(',')
    return _report(model_axis_benchmark(args.sweep_models, args.rounds, dtypes),
                   lambda result: _print_model_axis(result, dtypes), args.json)
  if args.whole_process:
    return _report(whole_process_benchmark(args.rounds, args.cache), _print_whole_process, args.json)
  if args.only_sweep:
    return _report(sweep_benchmark(args.sweep_models, args.sweep_epochs), _print_sweep, args.json)
  wall0 = time.perf_counter()
  vae, dae = JaxTrainer(vae_config(), args.steps), JaxTrainer(dae_config(), args.steps)
  torch_run = torch_vae_trainer(args.steps)
  rounds = {'vae': [], 'dae': [], 'torch_vae': []}
  for _ in range(args.rounds):
    rounds['vae'].append(vae.run())
    if torch_run:
      rounds['torch_vae'].append(torch_run())
    rounds['dae'].append(dae.run())
  peak = peak_gflops()
  median = {k: statistics.median(v) for k, v in rounds.items() if v}
  vae_flops = matmul_flops_per_example([D, 400, 40]) + matmul_flops_per_example([20, 400, D])
  dae_flops = matmul_flops_per_example([D, 512, 128, 32, 128, 512, D])
  result = {
      'device': str(jax.devices()[0]),
      'peak_gflops': peak,
      'vae_examples_per_s': median['vae'],
      'vae_gflops': median['vae'] * vae_flops / 1e9,
      'dae_examples_per_s': median['dae'],
      'dae_gflops': median['dae'] * dae_flops / 1e9,
      'vae_mflop_per_example': vae_flops / 1e6,
      'dae_mflop_per_example': dae_flops / 1e6,
  }
  if 'torch_vae' in median:
    result['torch_vae_examples_per_s'] = median['torch_vae']
    result['vae_speedup_vs_torch'] = median['vae'] / median['torch_vae']
  if not args.no_sweep:
    result.update(sweep_benchmark(args.sweep_models, args.sweep_epochs))
  result['wall_time_s'] = time.perf_counter() - wall0
  _print_table(result, rounds)
  if not args.no_sweep:
    _print_sweep(result)
  if args.json:
    print(json.dumps(result))


def _print_table(result: dict, rounds: dict) -> None:
  peak = result['peak_gflops']
  print(f'device: {result["device"]}   float32 matmul peak: {peak:.1f} GFLOP/s')
  print(f'{"model":<12}{"examples/s":>14}{"GFLOP/s":>10}{"% of peak":>11}   rounds (examples/s)')
  for name, key in (('VAE (JAX)', 'vae'), ('DAE (JAX)', 'dae')):
    gflops = result[f'{key}_gflops']
    print(f'{name:<12}{result[f"{key}_examples_per_s"]:>14,.0f}{gflops:>10.1f}{100 * gflops / peak:>10.1f}%   '
          + ', '.join(f'{r:,.0f}' for r in rounds[key]))
  if 'torch_vae_examples_per_s' in result:
    print(f'{"VAE (torch)":<12}{result["torch_vae_examples_per_s"]:>14,.0f}{"":>21}   '
          + ', '.join(f'{r:,.0f}' for r in rounds['torch_vae']))
    print(f'JAX / PyTorch VAE examples/s: {result["vae_speedup_vs_torch"]:.2f}x')
  print(f'wall time: {result["wall_time_s"]:.1f} s')


def _print_sweep(result: dict) -> None:
  n = result['sweep_models']
  print(f'{n} VAEs x {result["sweep_epochs"]} epochs on {result["sweep_data"]}, {result["sweep_devices"]} device(s), '
        'wall time including compilation:')
  print(f'  one vectorized sweep: {result[f"sweep{n}_wall_s"]:7.1f} s  '
        f'{result["sweep_model_examples_per_s"]:>9,.0f} model-examples/s')
  print(f'  one after another:    {result[f"sequential{n}_wall_s"]:7.1f} s  '
        f'{result["sequential_model_examples_per_s"]:>9,.0f} model-examples/s')
  print(f'  sweep speedup: {result["sweep_speedup"]:.2f}x')


if __name__ == '__main__':
  main()
