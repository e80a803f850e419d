"""The periodic work of the epoch loop (``aelab/train/loop.py``): small hooks with one job each, in the
shape of clu's periodic actions (``__call__`` runs ``apply`` when ``should_trigger``; the interface is
copied, not the dependency). After every epoch the loop calls the :class:`DivergenceGuard` on the epoch's
outputs, writes the metrics, then calls :class:`Checkpoint`, :class:`Figures` and :class:`Progress` with
an :class:`EpochEnd`.
"""
import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

from aelab.eval import metrics, plots
from aelab.train import checkpoints, figures

Log = Callable[[str], None]


@dataclasses.dataclass
class Timer:
  """Seconds spent per part of the run, for summary.json (``time_<part>_s``)."""
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  @contextlib.contextmanager
  def __call__(self, part: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.add(part, time.perf_counter() - t0)

  def add(self, part: str, seconds: float) -> None:
    self.seconds[part] = self.seconds.get(part, 0.0) + seconds


@dataclasses.dataclass
class EpochEnd:
  """What the hooks see after an epoch of a group of ``K`` models.

  ``step``: the global training step after the epoch; ``outputs[m]``: model ``m``'s host outputs of
  ``Program.epoch`` (``train``, ``test``, ``x_tilde``, ``x_hat``, ...); ``records[m]`` its metrics as
  written; ``alive[m]`` whether it is still training; ``stop``: the loop stops after this epoch (a signal,
  or diverged models leave the group) and the state must be checkpointed now; ``iterator``: the grain
  iterator's state after a streamed epoch."""
  epoch: int
  step: int
  state: Any
  outputs: list[dict]
  records: list[dict]
  alive: np.ndarray
  seconds: float
  stop: bool = False
  iterator: dict | None = None


class Hook:
  """Runs :meth:`apply` every ``every`` epochs and at epoch ``last`` (``every=1``: every epoch)."""

  def __init__(self, every: int, last: int):
    self.every, self.last = every, last

  def should_trigger(self, end: EpochEnd) -> bool:
    return bool(self.every) and (end.epoch % self.every == 0 or end.epoch == self.last)

  def __call__(self, end: EpochEnd) -> bool:
    """Applies the hook if its time has come; returns whether it did."""
    if not self.should_trigger(end):
      return False
    self.apply(end)
    return True

  def apply(self, end: EpochEnd) -> None:
    raise NotImplementedError

  def close(self) -> None:
    """Waits for the hook's background work and releases it."""


# A parameter or a mean code larger than this in magnitude counts as diverged. Trained autoencoders'
# weights and codes are O(1) to O(100); an exploding optimizer (configs/ae.py with learning rate 1e6:
# parameters of 5e6 and codes of mean magnitude 2.6e16 after one epoch) puts them far past it while a
# bounded loss (MSE of a sigmoid output) stays finite.
DIVERGED_MAGNITUDE = 1e6
CODE_METRICS = ('code_mean_abs', 'code_norm')


def divergence(out: dict, epoch: int) -> str | None:
  """Why one model's epoch ``out`` (a row of ``Program.epoch``'s output) counts as diverged, or None.

  Diverged: a step's training loss, a test metric or a parameter is not finite, or the magnitude of a
  parameter or of the test codes (``test/code_mean_abs``, ``test/code_norm``) exceeds ``DIVERGED_MAGNITUDE``
  (a loss on a bounded output, such as MSE after a sigmoid, may still look fine then)."""
  losses = np.asarray(out['train']['loss']).reshape(-1)
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    return f'The training loss became {losses[bad[0]]} at epoch {epoch}, step {bad[0] + 1} of {losses.size}'
  for name, value in out['test'].items():
    if not np.isfinite(value):
      return f'The test metric test/{name} became {value} at epoch {epoch}'
  biggest = float(out['param_max_abs'])
  if not np.isfinite(biggest):
    return f'A parameter became {biggest} at epoch {epoch}'
  if biggest > DIVERGED_MAGNITUDE:
    return f'A parameter reached magnitude {biggest:.3g} (> {DIVERGED_MAGNITUDE:g}) at epoch {epoch}'
  for name in CODE_METRICS:
    if name in out['test'] and out['test'][name] > DIVERGED_MAGNITUDE:
      return f'The test codes reached test/{name}={out["test"][name]:.3g} (> {DIVERGED_MAGNITUDE:g}) at epoch {epoch}'
  return None


class DivergenceGuard:
  """Stops models whose epoch diverged (:func:`divergence`): marks them dead in ``alive``, pins their last
  good checkpoint (``pinned``, kept by the checkpoint retention) and reports it. A group of one raises
  FloatingPointError instead, once the checkpoints in flight are written (``wait``)."""

  def __init__(self, names: Sequence[str], pinned: set[int], last_good: Callable[[], int], wait: Callable[[], None],
               log: Log):
    self.names, self.pinned, self.last_good, self.wait, self.log = names, pinned, last_good, wait, log

  def __call__(self, epoch: int, outputs: list[dict], alive: np.ndarray) -> list[int]:
    """Checks every live model's ``outputs``; returns the models that diverged at ``epoch``."""
    diverged = []
    for m in np.flatnonzero(alive):
      reason = divergence(outputs[m], epoch)
      if reason is not None:
        alive[m] = False
        diverged.append(int(m))
        self._stop(m, reason)
    return diverged

  def _stop(self, m: int, reason: str) -> None:
    good = self.last_good()
    self.pinned.add(good)
    kept = f'the last good checkpoint (epoch {good}) is kept' if good else 'no checkpoint yet'
    message = (f'{reason}; stopped without saving this epoch ({kept}). Lower optimizer.learning_rate, check '
               'the data, or pick another likelihood, in a new --workdir (a workdir is one run).')
    if len(self.names) == 1:
      self.wait()
      raise FloatingPointError(message)
    self.log(f'{self.names[m]}: {message}')


class Checkpoint(Hook):
  """Saves the group's stacked state every ``train.checkpoint_every`` epochs, at the last epoch and when
  the loop stops (asynchronous orbax save, ``checkpoints.GroupCheckpoints``), then points each live run's
  directory to it (checkpoint.json); the grain iterator's state of streamed data is an item of the same checkpoint.
  The metric writers are flushed first, so metrics.jsonl never lags behind a checkpoint."""

  def __init__(self, ckpt: checkpoints.GroupCheckpoints, run_dirs: Sequence[str], every: int, last: int,
               start_epoch: int, pinned: set[int], flush: Callable[[], None], timer: Timer):
    super().__init__(every, last)
    self.ckpt, self.run_dirs, self.pinned, self.flush = ckpt, run_dirs, pinned, flush
    self.timer, self.epoch = timer, start_epoch

  def should_trigger(self, end: EpochEnd) -> bool:
    return end.stop or super().should_trigger(end)

  def apply(self, end: EpochEnd) -> None:
    self.flush()
    with self.timer('checkpoints'):
      self.ckpt.save(end.epoch, end.state, self.pinned, data_iterator=end.iterator)
      for m in np.flatnonzero(end.alive):
        checkpoints.write_pointer(self.run_dirs[m], self.ckpt.directory, int(m), end.epoch)
      self.epoch = end.epoch
      if end.stop:
        self.ckpt.wait()

  def wait(self) -> None:
    with self.timer('checkpoints'):
      self.ckpt.wait()

  def close(self) -> None:
    with self.timer('checkpoints'):
      self.ckpt.close()


class Figures(Hook):
  """Draws each live model's reconstruction figure every ``train.figures_every`` epochs on a background
  thread (``figures.Painter``), keeping the rows for ``reconstructions_over_epochs.png``; at the end,
  :meth:`draw_curves` and :meth:`draw_final` draw the end-of-training figures. Data that are not images
  get the learning curves only (``images=False``)."""

  def __init__(self, dataset: Any, configs: Sequence[Any], figure_paths: Sequence[Callable[[str], str]],
               start_epoch: int, timer: Timer, write_images: Callable[[int, int, dict], None] | None = None):
    train = configs[0].train
    super().__init__(train.figures_every, last=-1)
    self.dataset, self.configs, self.paths, self.timer = dataset, configs, figure_paths, timer
    self.write_images = write_images  # (model, step, {name: H x W [x C] image}): the metric writers'
    self.painter = figures.Painter()
    self.images = dataset.kind == 'image'
    self.by_epoch = [figures.load_reconstructions(p, start_epoch) if self.images else {} for p in figure_paths]
    self.inputs = dataset.to_float32(dataset.test[:train.num_figure_images]) if self.images else None

  def should_trigger(self, end: EpochEnd) -> bool:
    return self.images and super().should_trigger(end)

  def apply(self, end: EpochEnd) -> None:
    for m in np.flatnonzero(end.alive):
      rows = self.draw(int(m), end.epoch, end.outputs[m]['x_tilde'], end.outputs[m]['x_hat'])
      if self.write_images is not None:
        self.write_images(int(m), end.step, {'reconstructions': plots.tile(list(rows.values()), self.dataset.shape)})

  def draw(self, m: int, epoch: int, x_tilde: np.ndarray, x_hat: np.ndarray) -> dict[str, np.ndarray]:
    """Submits model ``m``'s reconstruction figure of ``epoch``; returns its rows (each ``N x D``)."""
    rows = {'input': self.inputs, 'corrupted': x_tilde, 'reconstruction': x_hat}
    if self.configs[m].corruption.name == 'none':
      del rows['corrupted']
    self.painter.submit(figures.reconstructions, self.paths[m], epoch, rows, self.dataset.shape, self.by_epoch[m])
    return rows

  def redraw_lost(self, epoch: int, reconstruct: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> None:
    """Draws again the figure of ``epoch`` (the one resumed from) for each model that lacks it (a kill
    between its checkpoint and its drawing lost it); ``reconstruct(m)`` gives ``(x_tilde, x_hat)``."""
    if not self.images or not epoch or epoch % self.every:
      return
    for m in range(len(self.paths)):
      if epoch not in self.by_epoch[m]:
        self.draw(m, epoch, *reconstruct(m))

  def draw_curves(self, m: int, records: list[dict]) -> None:
    """Submits model ``m``'s learning curves (``records``: its metrics.jsonl)."""
    if records:
      self.painter.submit(plots.learning_curves, records, self.paths[m]('learning_curves.png'))

  def draw_final(self, m: int, arrays: dict) -> None:
    """Submits model ``m``'s end-of-training figures (its row of ``figures.make_final_arrays``): for sparse
    codes (``plots.is_sparse``: an SAE's) ``feature_density.png``, for images the image figures."""
    if 'codes' in arrays and plots.is_sparse(arrays['codes']):
      self.painter.submit(plots.feature_density, np.asarray(arrays['codes']), self.paths[m]('feature_density.png'))
    if self.images:
      self.painter.submit(figures.final, self.paths[m], arrays, self.dataset, self.configs[m], self.by_epoch[m])

  def wait(self) -> None:
    with self.timer('figures_wait'):
      self.painter.wait()

  def close(self) -> None:
    try:
      self.painter.close()
    finally:
      self.timer.add('figures', self.painter.seconds)


class Progress(Hook):
  """Logs one line per epoch: a single run's main metrics, or for a group the range over its live models
  of the loss and the main test metric; the throughput and the time left (ETA)."""

  def __init__(self, log: Log, label: str, num_epochs: int, examples_per_epoch: int, start_epoch: int):
    super().__init__(every=1, last=num_epochs)
    self.log, self.label, self.examples_per_epoch = log, label, examples_per_epoch
    self.first, self.started = start_epoch + 1, None

  def apply(self, end: EpochEnd) -> None:
    if self.started is None:  # the clock starts with the first epoch (after compiling)
      self.started = time.perf_counter() - end.seconds
    per_epoch = (time.perf_counter() - self.started) / (end.epoch - self.first + 1)
    examples_per_s = int(end.alive.sum()) * self.examples_per_epoch / end.seconds
    self.log(progress_line(self.label, end.epoch, self.last, end.records, end.alive, examples_per_s, per_epoch))


PROGRESS_METRICS = ('train/loss', 'test/recon', 'test/neg_elbo', 'test/kl', 'test/recon_mse',
                    'test/recon_mse_clean_input')


def progress_line(label: str, epoch: int, num_epochs: int, records: list[dict], alive: np.ndarray,
                  examples_per_s: float, seconds_per_epoch: float) -> str:
  """The line :class:`Progress` logs (``epoch 3/30 train/loss=... | 12,345 examples/s | ETA 00:01:02``)."""
  eta = time.strftime('%H:%M:%S', time.gmtime(seconds_per_epoch * (num_epochs - epoch)))
  if len(records) == 1:
    shown = ' '.join(f'{k}={v:.4g}' for k, v in records[0].items() if k in PROGRESS_METRICS)
    return f'{label}epoch {epoch}/{num_epochs} {shown} | {examples_per_s:,.0f} examples/s | ETA {eta}'
  live = [r for r, a in zip(records, alive) if a]
  shown = []
  for key in ('train/loss', 'test/neg_elbo' if live and 'test/neg_elbo' in live[0] else 'test/recon'):
    values = [r[key] for r in live if key in r]
    if values:
      shown.append(f'{key} {min(values):.4g}..{max(values):.4g}')
  return (f'{label}epoch {epoch}/{num_epochs} | {len(live)}/{len(records)} models | {" | ".join(shown)} | '
          f'{examples_per_s:,.0f} model-examples/s | ETA {eta}')


def eval_reconstruct(family: Any, params: Any, x_fig: Any, hp: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
  """Model ``m``'s ``(x_tilde, x_hat)`` of the figure images ``x_fig`` (for :meth:`Figures.redraw_lost`)."""
  row = jax.tree.map(lambda x: x[m], (params, hp))
  return jax.device_get(jax.jit(family.reconstruct)(row[0], x_fig, jax.random.key(metrics.EVAL_SEED), row[1]))
