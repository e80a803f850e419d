"""Draws samples of a trained run and, with ``--evaluate``, scores them against the test split:
``python -m aelab.sample --workdir=DIR --sampler=NAME --num=N`` (optional: ``--seed=S``, ``--out=FILE``,
``--evaluate``, and for a conditional family such as ``cvae`` ``--label=K``).

Samplers (``aelab.samplers``): ``prior`` (the family's own), ``normal``, ``gmm`` (``--n_components``),
``two_stage``, ``pixelcnn`` and ``uniform_codes`` (VQ-VAE). Writes ``DIR/samples/NAME.npz`` (or ``--out``):
``x`` float32 ``N x <data shape>`` (likelihood means, in [0, 1] for images) and, for images, ``x_uint8``
(``round(255 x)``); ``DIR/samples/NAME.png``, a grid of the first 64; with ``--evaluate``
``DIR/samples/NAME.json``: ``test/fd_classifier``, ``test/precision``, ``test/recall``, ``test/density``,
``test/coverage`` (``aelab.samplers.score``, against the test split without binarization). A fitted
sampler is kept in ``DIR/samplers/NAME/`` and reused. A conditional family's samples are drawn given
``--label=K`` (all of class ``K``) or, by default, every class in turn: the npz then holds their labels ``y``
(int32 ``N``) and the figure has one row per label (up to 16 samples each).
"""
import argparse
import json
import os

import numpy as np

from aelab import api, cli, data, samplers
from aelab.errors import ConfigError
from aelab.eval import plots


def sample_workdir(workdir: str, sampler: str, num: int, seed: int = 0, out: str | None = None,
                   evaluate: bool = False, options: samplers.Options = samplers.Options(),
                   log=print, label: int | None = None) -> dict:
  """Draws ``num`` samples of ``sampler`` from the run in ``workdir`` and writes the npz, the figure and
  (``evaluate``) the scores; a conditional family's (``cvae``) given class ``label``, by default every class in
  turn (the npz gets their labels ``y``, the figure one row per label). Returns ``{'npz', 'figure', 'json'?,
  **scores}``. Raises ConfigError for a sampler that does not fit the family or a ``label`` that does not fit
  it, FileNotFoundError for a workdir without a trained run."""
  config = api.read_config(workdir)
  dataset = data.load(config.data)
  trained = api.load(workdir, dataset)
  _check_label(trained, label)
  y = samplers.labels_for(trained, num, label)
  x = samplers.draw(trained, dataset, sampler, num, seed, workdir, options, log, y)
  out = out or os.path.join(workdir, 'samples', f'{sampler}.npz')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  arrays = {'x': x.reshape(num, *dataset.shape)} | ({} if y is None else {'y': y})
  if dataset.kind == 'image':
    arrays['x_uint8'] = np.round(arrays['x'] * 255).astype(np.uint8)
  np.savez_compressed(out, **arrays)
  stem = os.path.splitext(out)[0]
  result = {'npz': out}
  if dataset.kind == 'image':
    _figure(x, y, dataset.shape, stem + '.png', f'{config.model.name}: {sampler} samples')
    result['figure'] = stem + '.png'
  if evaluate:
    scores = {'sampler': sampler, 'num': num, 'seed': seed, 'epoch': trained.epoch,
              **samplers.score(x, _grey(config, dataset), log)}
    with open(stem + '.json', 'w') as f:
      json.dump(scores, f, indent=1)
    result.update(scores, json=stem + '.json')
  return result


def _check_label(trained: api.Trained, label: int | None) -> None:
  """Raises ConfigError (one line) for ``--label`` given to an unconditional family or outside its classes."""
  if label is None:
    return
  name, c = trained.config.model.name, trained.num_classes
  if not c:
    raise ConfigError(f'--label={label}: model.name={name} is not conditioned on labels (a conditional family, '
                      'such as cvae, is); leave --label out.')
  if not 0 <= label < c:
    raise ConfigError(f'--label={label}: model.name={name} has classes 0..{c - 1}; give one of them.')


def _figure(x_NxD: np.ndarray, y_N: np.ndarray | None, shape, path: str, title: str) -> None:
  """The first 64 samples in a grid; a conditional family's (labels ``y_N``) with one row per label."""
  if y_N is None:
    plots.image_grid(x_NxD[:64], shape, path, title=title)
  else:
    plots.label_rows(x_NxD, y_N, shape, path, title)


def _grey(config, dataset: data.Dataset) -> data.Dataset:
  """The run's data without binarization (samples are likelihood means: they are scored against grey
  images, with a classifier trained on grey images)."""
  if config.data.binarize == 'none':
    return dataset
  grey = config.data.copy_and_resolve_references()
  grey.binarize = 'none'
  return data.load(grey)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m aelab.sample', description=__doc__.split('::')[0])
  parser.add_argument('--workdir', required=True, help='directory of a training run (config.json, checkpoints/)')
  parser.add_argument('--sampler', default='prior', help=f'one of {", ".join(samplers.SAMPLERS)}')
  parser.add_argument('--num', type=int, default=64, help='number of samples')
  parser.add_argument('--seed', type=int, default=0, help='seed of the samples (fits use --fit_seed)')
  parser.add_argument('--out', default=None, help='npz to write (default DIR/samples/SAMPLER.npz)')
  parser.add_argument('--evaluate', action='store_true', help='score the samples against the test split')
  parser.add_argument('--label', type=int, default=None,
                      help='a conditional family (cvae): the class to sample (default: every class in turn)')
  parser.add_argument('--n_components', type=int, default=10, help='gmm: mixture components')
  parser.add_argument('--fit_epochs', type=int, default=None, help='two_stage / pixelcnn: training epochs')
  parser.add_argument('--fit_seed', type=int, default=0, help='seed of a fitted sampler')
  parser.add_argument('--debug', action='store_true', help='show the traceback of an error instead of one line')
  args = parser.parse_args(argv)
  if args.num < 1 or args.n_components < 1 or (args.fit_epochs is not None and args.fit_epochs < 1):
    parser.error('--num, --n_components and --fit_epochs must be >= 1.')
  epochs = {} if args.fit_epochs is None else {'two_stage_epochs': args.fit_epochs, 'pixelcnn_epochs': args.fit_epochs}
  options = samplers.Options(n_components=args.n_components, fit_seed=args.fit_seed, **epochs)
  with cli.reporting(args.debug, args.workdir, exiting=__name__ == '__main__'):
    result = sample_workdir(args.workdir, args.sampler, args.num, args.seed, args.out, args.evaluate, options,
                            label=args.label)
  print(', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in result.items()), flush=True)


if __name__ == '__main__':
  main()
