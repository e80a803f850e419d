"""Generative benchmark: every family on the real MNIST split, its samplers, and how good their samples are.

  python experiments/generative_benchmark.py                       # every generative family of aelab.models
  python experiments/generative_benchmark.py ae vae aae vqvae --epochs=10 --num_samples=1000

Each family trains on the same data (8,000 / 2,000 of ../shared/data/mnist, data.split_seed=0, dynamic
binarization, seed 0), with the same MLP widths (784-512-256-16, ReLU, Bernoulli likelihood where the
family accepts it, else MSE on a sigmoid output) and the same epochs, into runs/generative/<family>; a
family that builds on vqvae uses configs/vqvae.py's conv code map (a 7x7 map of 256 codes), which its
PixelCNN prior needs. Then every sampler that fits the family (aelab.samplers: prior, normal, gmm,
two_stage, pixelcnn, uniform_codes) draws --num_samples samples, scored against the grey (not binarized)
test split in the fd_classifier features (aelab.eval.classifier). The table (test/nll where the family has
a likelihood, test/recon_mse, the sample metrics per sampler, training time) goes between the markers of
docs/results/generative.md; the sample grids to experiments/figures/generative_<family>_<sampler>.png.

Finished runs and scored samplers are reused (rerunning is fast): delete runs/generative/<family> to retrain.
A family name the script does not know is trained from aelab.config.base(name) with the same overrides.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aelab import api, config as config_lib, data, models, sample, samplers  # noqa: E402
from aelab.eval import classifier, samples  # noqa: E402
from aelab.train import engine  # noqa: E402

PAGE = os.path.join(ROOT, 'docs', 'results', 'generative.md')
FIGURES = os.path.join(ROOT, 'experiments', 'figures')
START, END = '<!-- generative_benchmark:start -->', '<!-- generative_benchmark:end -->'
NOT_GENERATIVE = ('sae',)  # sparse autoencoders of activations


def family_config(name: str, args: argparse.Namespace):
  """The family's config on MNIST with the shared widths, epochs and seeds."""
  if 'vqvae' in models.builds_on(name):
    config = config_lib.load(f'{os.path.join(ROOT, "configs", "vqvae.py")}:idx={args.data}')
    config = config_lib.with_family(config, name)
  else:
    config = config_lib.set_data(config_lib.base(name), f'idx={args.data}')
    bernoulli = 'bernoulli' in models.likelihoods(name)
    config.model.update(net='mlp', hidden=(512, 256), latent_dim=16, activation='relu',
                        likelihood='bernoulli' if bernoulli else 'mse', output_activation='sigmoid')
  config.seed = 0
  config.data.update(split_seed=0, binarize='dynamic')
  config.train.update(num_epochs=args.epochs, batch_size=128, figures_every=0)
  config.eval.nll_samples = args.nll_k
  return config_lib.adapt_to_data(config)


def train(name: str, args: argparse.Namespace) -> tuple[str, dict]:
  """Trains (or reuses) the family's run; returns its workdir and summary (with ``train_time_s``)."""
  workdir = os.path.join(args.runs, name)
  start = time.time()
  summary = engine.train_and_evaluate(family_config(name, args), workdir, log=lambda line: None)
  if 'train_time_s' not in summary:
    summary['train_time_s'] = round(time.time() - start, 1)
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=1)
  return workdir, summary


def score_sampler(workdir: str, name: str, sampler: str, args: argparse.Namespace) -> dict:
  """The sampler's scores (``DIR/samples/<sampler>.json``, reused when it has as many samples)."""
  path = os.path.join(workdir, 'samples', f'{sampler}.json')
  if os.path.exists(path):
    with open(path) as f:
      scores = json.load(f)
    if scores.get('num') == args.num_samples:
      return scores
  start = time.time()
  epochs = {} if args.fit_epochs is None else {'two_stage_epochs': args.fit_epochs, 'pixelcnn_epochs': args.fit_epochs}
  scores = sample.sample_workdir(workdir, sampler, args.num_samples, seed=0, evaluate=True,
                                 options=samplers.Options(**epochs), log=print)
  scores['sample_time_s'] = round(time.time() - start, 1)
  with open(path, 'w') as f:
    json.dump(scores, f, indent=1)
  shutil.copy(scores['figure'], os.path.join(FIGURES, f'generative_{name}_{sampler}.png'))
  return scores


def reference_rows(args: argparse.Namespace) -> list[str]:
  """The training split (2,000 of it) and uniform noise images scored like samples: the scale of the table."""
  config = family_config('ae', args)
  config.data.binarize = 'none'
  dataset = data.load(config.data)
  net = classifier.load_or_train(dataset)
  real = net.features(dataset.x_test)
  pick = np.random.default_rng(0).choice(len(dataset.train), args.num_samples, replace=False)
  noise = np.random.default_rng(0).random((args.num_samples, dataset.train.shape[1]), np.float32)
  rows = []
  for label, x in (('training split', dataset.x_train[pick]), ('uniform noise', noise)):
    m = samples.sample_metrics(real, net.features(x))
    rows.append(f'| {label} | | | | {_metrics(m)} | |')
  return rows + [f'<!-- fd_classifier test accuracy {net.test_accuracy:.4f} -->']


def _metrics(m: dict) -> str:
  get = lambda k: m.get(k, m.get(f'test/{k}'))  # noqa: E731
  return (f'{get("fd_classifier"):.2f} | {get("precision"):.3f} | {get("recall"):.3f} | {get("density"):.3f} | '
          f'{get("coverage"):.3f}')


def family_rows(name: str, args: argparse.Namespace) -> list[str]:
  workdir, summary = train(name, args)
  nll = summary.get('test/nll')
  nll = f'{nll:.2f}' if nll is not None else '-'
  config = api.read_config(workdir)
  trained = api.load(workdir, data.load(config.data))
  rows = []
  for sampler in samplers.applicable(trained):
    print(f'{name}: {sampler}', flush=True)
    scores = score_sampler(workdir, name, sampler, args)
    rows.append(f'| {name} | {sampler} | {nll} | {summary["test/recon_mse"]:.4f} | {_metrics(scores)} | '
                f'{summary["train_time_s"]:.0f} |')
  return rows


def write_table(rows: list[str], command: str) -> None:
  header = ['```bash', command, '```', '',
            '| family | sampler | test/nll | test/recon_mse | fd_classifier | precision | recall | density | '
            'coverage | train s |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
  with open(PAGE) as f:
    page = f.read()
  block = '\n'.join([START, *header, *rows, END])
  if START in page:
    page = page[:page.index(START)] + block + page[page.index(END) + len(END):]
  else:
    page = page.rstrip('\n') + '\n\n' + block + '\n'
  with open(PAGE, 'w') as f:
    f.write(page)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('families', nargs='*', help='family names (default: every generative one)')
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'mnist'))
  parser.add_argument('--epochs', type=int, default=20)
  parser.add_argument('--num_samples', type=int, default=2000)
  parser.add_argument('--nll_k', type=int, default=1000, help='importance samples of test/nll')
  parser.add_argument('--fit_epochs', type=int, default=None, help='epochs of two_stage and pixelcnn (default: theirs)')
  parser.add_argument('--runs', default='runs/generative')
  args = parser.parse_args()
  if not os.path.isdir(args.data):
    raise SystemExit(f'error: {args.data} not found: pass --data=DIR with the MNIST IDX files.')
  families = args.families or [n for n in models.available() if n not in NOT_GENERATIVE]
  os.makedirs(FIGURES, exist_ok=True)
  command = ('python experiments/generative_benchmark.py ' + ' '.join(sys.argv[1:])).strip()
  rows = reference_rows(args)
  for name in families:
    try:
      rows += family_rows(name, args)
    except Exception as e:  # one family's failure (a config it refuses) must not lose the others' rows
      print(f'{name}: failed: {e}', flush=True)
      rows.append(f'| {name} | failed: {str(e).splitlines()[0][:150]} | | | | | | | | |')
    write_table(rows, command)  # after each family: a long run's finished rows are on the page
  print('\n'.join(rows))


if __name__ == '__main__':
  main()
