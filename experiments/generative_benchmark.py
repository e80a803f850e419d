"""Generative benchmark: every family on the real MNIST split, its samplers, and how good their samples are.

  nice -n 15 python experiments/generative_benchmark.py            # the table of docs/results/generative.md
  python experiments/generative_benchmark.py ae vae vqvae --epochs=2 --num_samples=500 --runs=/tmp/gb   # a quick look

Each family trains on the same data (8,000 / 2,000 of ../shared/data/mnist, data.split_seed=0, dynamic
binarization, seed 0), with the same MLP widths (784-512-256-16, ReLU, Bernoulli likelihood where the family
accepts it, else MSE on a sigmoid output), batch 128 and the same epochs, into runs/generative/<family>; the
families of :data:`POPULATION` train ``--seeds`` seeds as one program (a sweep over ``seed``, one compiled
group) into runs/generative/<family>/seed=<s>. Family settings are the defaults of aelab.models except
:data:`SETTINGS` (to fit the time: the importance-weighted families draw 4 samples per example, the VampPrior
has 200 pseudo-inputs, the RAE is RAE-L2). A family that builds on vqvae uses configs/vqvae.py's conv code
map (a 7x7 map of 256 codes), which its PixelCNN prior needs, and is sampled by ``pixelcnn`` and
``uniform_codes`` only (a Gaussian mixture or a second VAE on its 784-number code map would be slow and say
little).

Every sampler that fits a family (aelab.samplers: prior, normal, gmm, two_stage, pixelcnn, uniform_codes)
draws ``--num_samples`` samples from the seed-0 run, scored against the grey (not binarized) test split in
the fd_classifier features (aelab.eval.classifier; trained once and cached). The table (test/nll where the
family has a likelihood, test/neg_elbo, test/recon_mse, the sample metrics per sampler, training time), the
checks of issue 17 and the wall time go between the markers of docs/results/generative.md; one figure per
family (a row of samples per sampler) to docs/figures/generative/<family>.png. The checks are printed too.

Finished runs, fitted samplers and scored samplers are reused (rerunning is fast): delete
runs/generative/<family> to retrain. The peak resident memory and wall time of the process are printed.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aelab import api, config as config_lib, data, models, samplers  # noqa: E402
from aelab.eval import classifier, plots, samples  # noqa: E402
from aelab.train import engine, sweep  # noqa: E402

PAGE = os.path.join(ROOT, 'docs', 'results', 'generative.md')
FIGURES = os.path.join(ROOT, 'docs', 'figures', 'generative')
START, END = '<!-- generative_benchmark:start -->', '<!-- generative_benchmark:end -->'
FAMILIES = ('vae', 'vamp', 'vae_iaf', 'rae', 'vqvae', 'vae_planar', 'ladder_vae', 'miwae', 'piwae', 'ciwae', 'svae',
            'gumbel_vae', 'wae', 'info_vae', 'aae', 'vae_gan', 'cvae')  # those of the checks first
POPULATION = ('vae', 'vamp', 'vae_iaf')  # the families of the NLL check: --seeds seeds in one program
SETTINGS = {'miwae': {'miwae.num_estimates': 2, 'vae.num_samples': 2},  # MIWAE(2, 2)
            'piwae': {'piwae.num_estimates': 2, 'vae.num_samples': 2},  # PIWAE(2, 2)
            'ciwae': {'vae.num_samples': 4},  # CIWAE with K = 4, beta 0.5
            'vamp': {'vamp.num_components': 200},  # 200 pseudo-inputs (the paper's 500 cost 2.5 times a VAE step)
            'rae': {'rae.regularizer': 'l2'},  # RAE-L2 (a gradient penalty's double backward costs more)
            # chosen by validation NLL on 2,000 images held out of the training split (experiments/iaf_selection.py)
            'vae_iaf': {'vae_iaf.made_hidden': (320,)}}
VQVAE_SAMPLERS = ('pixelcnn', 'uniform_codes')
FIGURE_SAMPLES = 10  # per sampler, in the family's figure
COLUMNS = ('family', 'sampler', 'test/nll', 'test/neg_elbo', 'test/recon_mse', 'fd_classifier', 'precision',
           'recall', 'density', 'coverage', 'train s')


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
  for field, value in SETTINGS.get(name, {}).items():
    section, key = field.split('.')
    config[section][key] = value
  config.seed = 0
  config.data.update(split_seed=0, binarize='dynamic')
  config.train.update(num_epochs=args.epochs, batch_size=128, figures_every=0)
  config.eval.nll_samples = args.nll_k
  return config_lib.adapt_to_data(config)


def train(name: str, args: argparse.Namespace) -> tuple[str, list[dict]]:
  """Trains (or reuses) the family's run, or its population of ``--seeds`` seeds as one program; returns the
  workdir of seed 0 and the summaries, seed 0 first."""
  config, workdir = family_config(name, args), os.path.join(args.runs, name)
  if name not in POPULATION or args.seeds == 1:
    return workdir, [engine.train_and_evaluate(config, workdir, log=lambda line: None)]
  seeds = sweep.axis('seed', list(range(args.seeds)))
  summaries = sweep.run_sweep(config, seeds, workdir, log=lambda line: print(f'{name}: {line}', flush=True))
  names = [sweep.run_name(s) for s in seeds]
  return os.path.join(workdir, names[0]), [summaries[n] for n in names]


def train_seconds(summary: dict) -> float:
  """Compilation plus epochs of the run's program (a population's: all of its models), seconds."""
  return summary.get('time_compile_s', 0.0) + summary.get('time_epochs_s', 0.0)


class Scorer:
  """The sample metrics of the test split's features (computed once) against samples' features."""

  def __init__(self, grey: data.Dataset):
    self.net = classifier.load_or_train(grey)
    self.real = self.net.features(grey.x_test)

  def __call__(self, x_NxD: np.ndarray) -> dict[str, float]:
    return samples.sample_metrics(self.real, self.net.features(x_NxD))


def fit_options(args: argparse.Namespace) -> samplers.Options:
  return samplers.Options(two_stage_epochs=args.two_stage_epochs, pixelcnn_epochs=args.pixelcnn_epochs,
                          pixelcnn_channels=args.pixelcnn_channels, pixelcnn_layers=args.pixelcnn_layers)


def score_sampler(trained: api.Trained, dataset: data.Dataset, workdir: str, sampler: str, scorer: Scorer,
                  args: argparse.Namespace) -> tuple[dict, np.ndarray]:
  """The sampler's scores and its first samples (``DIR/samples/<sampler>.json`` and ``.npy``, reused when
  they hold as many samples of the same checkpoint)."""
  path = os.path.join(workdir, 'samples', sampler)
  if os.path.exists(path + '.json') and os.path.exists(path + '.npy'):
    with open(path + '.json') as f:
      scores = json.load(f)
    if scores.get('num') == args.num_samples and scores.get('epoch') == trained.epoch:
      return scores, np.load(path + '.npy')
  start = time.time()
  x = samplers.draw(trained, dataset, sampler, args.num_samples, 0, workdir, fit_options(args), print)
  scores = {'sampler': sampler, 'num': args.num_samples, 'epoch': trained.epoch, **scorer(x),
            'sample_time_s': round(time.time() - start, 1)}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.json', 'w') as f:
    json.dump(scores, f, indent=1)
  np.save(path + '.npy', x[:FIGURE_SAMPLES])
  return scores, x[:FIGURE_SAMPLES]


def sampler_names(trained: api.Trained) -> list[str]:
  names = samplers.applicable(trained)
  return [n for n in names if n in VQVAE_SAMPLERS] if samplers.is_vqvae(trained) else names


def run_family(name: str, dataset: data.Dataset, scorer: Scorer, args: argparse.Namespace) -> dict:
  """``{'name', 'summaries' (per seed), 'samplers': {sampler: scores}}``; draws the family's figure."""
  workdir, summaries = train(name, args)
  trained = api.load(workdir, dataset)
  scored, firsts = {}, {}
  for sampler in [] if args.no_samplers else sampler_names(trained):
    print(f'{name}: {sampler}', flush=True)
    scored[sampler], firsts[sampler] = score_sampler(trained, dataset, workdir, sampler, scorer, args)
  if firsts:
    plots.image_rows(firsts, dataset.shape, os.path.join(FIGURES, f'{name}.png'), title=f'{name}: samples')
  return {'name': name, 'summaries': summaries, 'samplers': scored}


def reference(dataset: data.Dataset, scorer: Scorer, args: argparse.Namespace) -> dict[str, dict]:
  """The training split (as many images as samples; and the whole of it, the set issue 17's check names) and
  uniform noise images scored like samples: the scale of the table and the checks that the metrics tell real
  images from noise and find the training split close to the test split."""
  pick = np.random.default_rng(0).choice(len(dataset.train), args.num_samples, replace=False)
  noise = np.random.default_rng(0).random((args.num_samples, dataset.train.shape[1]), np.float32)
  refs = {}
  for label, real in (('training split', dataset.x_train[pick]), ('whole training split', dataset.x_train)):
    feats = scorer.net.features(real)
    at_k3 = samples.precision_recall(scorer.real, feats, k=3)  # the check's sensitivity to k (the 2019 paper's)
    refs[f'{label} ({len(real):,})'] = {**samples.sample_metrics(scorer.real, feats),
                                        **{f'{k}_k3': v for k, v in at_k3.items()}, 'num': len(real)}
  return {**refs, 'uniform noise': scorer(noise)}


# ---- the page ----


def _metrics(m: dict) -> list[str]:
  return [f'{m["fd_classifier"]:.2f}', f'{m["precision"]:.3f}', f'{m["recall"]:.3f}', f'{m["density"]:.3f}',
          f'{m["coverage"]:.3f}']


def _over_seeds(summaries: list[dict], key: str, digits: int) -> str:
  """``mean`` of one run, ``mean ± std`` (over seeds) of a population, ``-`` when the run lacks ``key``."""
  values = [s[key] for s in summaries if key in s]
  if not values:
    return '-'
  if len(values) == 1:
    return f'{values[0]:.{digits}f}'
  return f'{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}'


def family_rows(result: dict) -> list[list[str]]:
  summaries = result['summaries']
  label = result['name'] + (f' ({len(summaries)} seeds)' if len(summaries) > 1 else '')
  nll = _over_seeds(summaries, 'test/nll', 2)
  elbo = _over_seeds(summaries, 'test/neg_elbo', 2) if nll != '-' else '-'  # no likelihood: no ELBO
  common = [nll, elbo, _over_seeds(summaries, 'test/recon_mse', 4)]
  seconds = f'{train_seconds(summaries[0]):.0f}'
  if not result['samplers']:  # --no_samplers
    return [[label, '', *common, '', '', '', '', '', seconds]]
  return [[label, sampler, *common, *_metrics(m), seconds] for sampler, m in result['samplers'].items()]


def checks(results: dict[str, dict], refs: dict[str, dict]) -> list[str]:
  """The checks of issue 17 ("Done means"), one line each: PASS or FAIL and the numbers."""
  lines = []

  def check(ok: bool, text: str) -> None:
    lines.append(f'- **{"PASS" if ok else "FAIL"}**: {text}')

  nll = {n: [s['test/nll'] for s in r['summaries']] for n, r in results.items() if 'test/nll' in r['summaries'][0]}
  for name in ('vamp', 'vae_iaf'):
    if name in nll and 'vae' in nll:
      a, b = nll[name], nll['vae']
      pairs = sum(x < y for x, y in zip(a, b))
      check(np.mean(a) < np.mean(b), f'{name} test NLL {np.mean(a):.2f} < vae {np.mean(b):.2f} nats (mean over '
            f'{len(a)} seeds; lower for {pairs} of {min(len(a), len(b))} seeds paired by seed)')
  gaps = {n: max(s['test/nll'] - s['test/neg_elbo'] for s in results[n]['summaries']) for n in nll}
  worst = max(gaps, key=gaps.get) if gaps else None
  if worst:
    check(gaps[worst] <= 0, f'every test NLL <= its negative ELBO, for {len(gaps)} families (every seed): the '
          f'largest NLL - negative ELBO is {gaps[worst]:.2f} nats ({worst})')
  rae = results.get('rae', {}).get('samplers', {})
  if 'gmm' in rae and 'normal' in rae:
    g, n = rae['gmm']['fd_classifier'], rae['normal']['fd_classifier']
    check(g < n, f'rae fd_classifier with the gmm sampler {g:.2f} < with N(0, I) codes {n:.2f}')
  vq = next((r['samplers'] for n, r in results.items() if 'pixelcnn' in r['samplers']), {})
  if 'pixelcnn' in vq and 'uniform_codes' in vq:
    p, u = vq['pixelcnn']['fd_classifier'], vq['uniform_codes']['fd_classifier']
    check(p < 0.5 * u, f'vqvae fd_classifier with its PixelCNN prior {p:.2f} against {u:.2f} for uniform codes '
          f'({u / p:.1f} times lower; precision {vq["pixelcnn"]["precision"]:.3f} against '
          f'{vq["uniform_codes"]["precision"]:.3f})')
  noise = refs['uniform noise']
  train = {label: m for label, m in refs.items() if label.startswith('training split')}
  whole = {label: m for label, m in refs.items() if label.startswith('whole training split')}
  real = next(iter(train.values()))  # the subset of as many images as samples: the fd_classifier check
  full = next(iter(whole.values()), real)  # the sets the issue names: the whole training split, the test split

  def pr(m: dict) -> str:
    k3 = f'; at k = 3: {m["precision_k3"]:.3f}, {m["recall_k3"]:.3f}' if 'precision_k3' in m else ''
    return f'precision {m["precision"]:.3f}, recall {m["recall"]:.3f} at k = 5{k3}'

  def images(m: dict) -> str:
    return f'{m["num"]:,} images' if 'num' in m else 'images'

  subset = f'; a subset of {images(real)} of the training split: {pr(real)}' if full is not real else ''
  check(min(full['precision'], full['recall']) >= 0.9, f'the {"whole " if full is not real else ""}training '
        f'split ({images(full)}) against the test split (the real set): {pr(full)} (the check: both >= 0.9 at '
        f'k = 5 nearest neighbours, as every sample metric of the table){subset}')
  num = f'{real["num"]:,} ' if 'num' in real else ''
  check(real['fd_classifier'] < 0.05 * noise['fd_classifier'], f'the {num}training images\' fd_classifier '
        f'{real["fd_classifier"]:.2f} '
        f'against {noise["fd_classifier"]:.2f} for uniform noise ({real["fd_classifier"] / noise["fd_classifier"]:.4f}'
        ' of it; below 0.05)')
  return lines


def table(rows: list[list[str]]) -> list[str]:
  return ['| ' + ' | '.join(COLUMNS) + ' |', '|' + ' --- |' * len(COLUMNS)] + ['| ' + ' | '.join(r) + ' |'
                                                                            for r in rows]


def write_page(lines: list[str]) -> None:
  """Replaces the text between the page's markers with ``lines`` (appends the block if it has none)."""
  with open(PAGE) as f:
    page = f.read()
  block = '\n'.join([START, *lines, END])
  if START in page:
    page = page[:page.index(START)] + block + page[page.index(END) + len(END):]
  else:
    page = page.rstrip('\n') + '\n\n' + block + '\n'
  with open(PAGE, 'w') as f:
    f.write(page)


def page_lines(command: str, rows: list[list[str]], check_lines: list[str], scorer: Scorer, wall_s: float,
               done: bool) -> list[str]:
  machine = f'{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}'
  state = 'finished' if done else 'still running (the families so far)'
  return ['```bash', command, '```', '', f'Wall time {wall_s / 60:.1f} min ({state}) on {machine}; '
          f'`fd_classifier` test accuracy {scorer.net.test_accuracy:.4f}.', '', *table(rows), '',
          'Checks (issue 17):', '', *check_lines]


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('families', nargs='*', help=f'family names (default: those of aelab.models among {FAMILIES})')
  parser.add_argument('--data', default=os.path.join(ROOT, '..', 'shared', 'data', 'mnist'))
  parser.add_argument('--epochs', type=int, default=8)
  parser.add_argument('--seeds', type=int, default=3, help=f'seeds of the populations ({", ".join(POPULATION)})')
  parser.add_argument('--num_samples', type=int, default=2000)
  parser.add_argument('--nll_k', type=int, default=100, help='importance samples of test/nll')
  parser.add_argument('--two_stage_epochs', type=int, default=20)
  parser.add_argument('--pixelcnn_epochs', type=int, default=5)
  parser.add_argument('--pixelcnn_channels', type=int, default=32)
  parser.add_argument('--pixelcnn_layers', type=int, default=3)
  parser.add_argument('--runs', default='runs/generative')
  parser.add_argument('--no_page', action='store_true', help='print the table without writing the docs page')
  parser.add_argument('--no_samplers', action='store_true', help='train and evaluate only (no samples, no figures)')
  return parser.parse_args()


def main() -> None:
  start, args = time.time(), parse_args()
  if not os.path.isdir(args.data):
    raise SystemExit(f'error: {args.data} not found: pass --data=DIR with the MNIST IDX files.')
  families = args.families or [n for n in FAMILIES if n in models.available()]
  os.makedirs(FIGURES, exist_ok=True)
  command = ('python experiments/generative_benchmark.py ' + ' '.join(sys.argv[1:])).strip()
  config = family_config('ae', args)
  dataset = data.load(config.data)
  config.data.binarize = 'none'
  grey = data.load(config.data)
  scorer = Scorer(grey)
  refs = reference(grey, scorer, args)
  results, rows = {}, [[label, '', '', '', '', *_metrics(m), ''] for label, m in refs.items()]
  for i, name in enumerate(families):
    try:
      results[name] = run_family(name, dataset, scorer, args)
      rows += family_rows(results[name])
    except Exception as e:  # one family's failure (a config it refuses) must not lose the others' rows
      print(f'{name}: failed: {e}', flush=True)
      rows.append([name, f'failed: {str(e).splitlines()[0][:150]}'] + [''] * (len(COLUMNS) - 2))
    lines = page_lines(command, rows, checks(results, refs), scorer, time.time() - start, i == len(families) - 1)
    if not args.no_page:
      write_page(lines)  # after each family: a long run's finished rows are on the page
  print('\n'.join(lines))
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'wall time {time.time() - start:.0f} s, peak resident memory {peak_mib:.0f} MiB', flush=True)


if __name__ == '__main__':
  main()
