"""The sparsity-fidelity frontier of sparse autoencoders on superposition data (ground truth known), feature
absorption on hierarchical features (Matryoshka against TopK) and resampling of dead latents.

  python experiments/sae_study.py --figure=experiments/figures/sae_study.png  # the docs' numbers (frontier,
                                                                              # hierarchy, resample)
  python experiments/sae_study.py --only=target --epochs=20                  # TopK k = 4 at two sizes
  python experiments/sae_study.py --epochs=2 --seeds=1 --workdir=/tmp/sae_study     # quick

Frontier data: ``configs/sae_topk.py:superposition`` (96 true features in 32 dimensions, each active with
probability 1/32, magnitudes uniform in [0, 1]; 50,000 train / 10,000 test examples) and 96 latents.
Seven families, each a sweep of its sparsity knob times ``--seeds`` seeds:

- TopK, ``sae.k`` in K_VALUES: k is structural (the top-k has a static size), so one program per k (the
  seeds of one k train together); BatchTopK, ``sae.k`` in BATCHTOPK_K_VALUES, and Matryoshka TopK (nested
  dictionaries MATRYOSHKA_PREFIXES), ``sae.k`` in MATRYOSHKA_K_VALUES: likewise one program per k;
- JumpReLU, ``sae.l0_weight`` in L0_WEIGHTS: traced, one program for all weights and seeds;
- ReLU with the decoder-norm-scaled L1 penalty, ``sae.l1_weight`` in L1_WEIGHTS: one program; the same with
  p-annealing (p from 1 to 0.5 over P_ANNEAL_STEPS steps) and a WARMUP_STEPS warm-up of the coefficient;
- Gated, ``sae.l1_weight`` in GATED_L1_WEIGHTS: one program.

Each run reports (summary.json) L0, explained variance, the fraction of dead latents and MMCS (mean over
the true features of the largest cosine similarity with a decoder row). ``hierarchy``: TopK and Matryoshka
TopK at the same k on HIERARCHY data (parents whose children fire only with them): parent MMCS and
absorption per seed. ``resample``: TopK without AuxK at a high learning rate, with and without
resampling: dead latents per seed. Writes ``<workdir>/sae_study_<part>.md`` and ``sae_study.png``
(explained variance, MMCS and dead latents against L0).
"""
import argparse
import os
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

from aelab import config as config_lib
from aelab.train import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
K_VALUES = (1, 2, 3, 4, 6, 8, 12)
BATCHTOPK_K_VALUES = (2, 4, 8)
L0_WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3)
L1_WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3)
GATED_L1_WEIGHTS = (0.01, 0.03, 0.1, 0.3, 1.0)
MATRYOSHKA_K_VALUES = (2, 4, 8)
MATRYOSHKA_PREFIXES = (12, 24, 48)
P_ANNEAL_STEPS = 1000
WARMUP_STEPS = 200
METRICS = {'test/l0': ('L0', '.2f'), 'test/explained_variance': ('explained variance', '.3f'),
           'test/dead_fraction': ('dead latents', '.3f'), 'test/mmcs': ('MMCS', '.3f'),
           'test/log10_density_q50': ('median log10 firing frequency', '.2f')}


def families() -> dict[str, tuple[str, dict, list[dict]]]:
  """``{label: (swept field, config overrides, sweep)}`` without the seeds."""
  return {
      'TopK': ('sae.k', {'sae.activation': 'topk'}, sweep.axis('sae.k', K_VALUES)),
      'BatchTopK': ('sae.k', {'sae.activation': 'batchtopk'}, sweep.axis('sae.k', BATCHTOPK_K_VALUES)),
      'JumpReLU': ('sae.l0_weight', {'sae.activation': 'jumprelu', 'sae.aux_weight': 0.0,
                                     'sae.bandwidth': 0.05, 'sae.threshold_init': 0.1},
                   sweep.axis('sae.l0_weight', L0_WEIGHTS)),
      'ReLU + L1': ('sae.l1_weight', {'sae.activation': 'relu', 'sae.aux_weight': 0.0,
                                      'sae.unit_norm_decoder': False},
                    sweep.axis('sae.l1_weight', L1_WEIGHTS)),
      'Gated': ('sae.l1_weight', {'sae.activation': 'gated', 'sae.aux_weight': 0.0},
                sweep.axis('sae.l1_weight', GATED_L1_WEIGHTS)),
      'Matryoshka TopK': ('sae.k', {'sae.activation': 'topk', 'sae.matryoshka_prefixes': MATRYOSHKA_PREFIXES},
                          sweep.axis('sae.k', MATRYOSHKA_K_VALUES)),
      'ReLU + Lp (p 1 to 0.5)': ('sae.l1_weight', {'sae.activation': 'relu', 'sae.aux_weight': 0.0,
                                                   'sae.unit_norm_decoder': False, 'sae.p_final': 0.5,
                                                   'sae.p_anneal_steps': P_ANNEAL_STEPS,
                                                   'sae.sparsity_warmup_steps': WARMUP_STEPS},
                                 sweep.axis('sae.l1_weight', L1_WEIGHTS)),
  }


def base_config(epochs: int, overrides: dict):
  config = config_lib.load(f'{ROOT / "configs" / "sae_topk.py"}:superposition')
  config.train.update(num_epochs=epochs, figures_every=0)
  return sweep.apply(config, overrides)


def run_family(label: str, field: str, overrides: dict, values: list[dict], args) -> list[dict]:
  """Trains one family's sweep (finished runs are skipped); one row per run: swept value, seed, metrics."""
  config = base_config(args.epochs, overrides)
  runs = sweep.product(values, sweep.axis('seed', range(args.seeds)))
  workdir = os.path.join(args.workdir, label.replace(' ', '').replace('+', '_'))
  summaries = sweep.run_sweep(config, runs, workdir, log=lambda line: print(f'[{label}] {line}'))
  return [{'family': label, 'value': r[field], 'seed': r['seed'],
           **{m: summaries[sweep.run_name(r)][m] for m in METRICS}} for r in runs]


def aggregate(rows: list[dict]) -> list[tuple[str, float, dict[str, tuple[float, float]]]]:
  """``[(family, swept value, {metric: (mean, std over seeds)})]``."""
  out = []
  for family in dict.fromkeys(r['family'] for r in rows):
    mine = [r for r in rows if r['family'] == family]
    for value in sorted({r['value'] for r in mine}):
      runs = [r for r in mine if r['value'] == value]
      out.append((family, value, {m: (float(np.mean([r[m] for r in runs])), float(np.std([r[m] for r in runs])))
                                  for m in METRICS}))
  return out


def markdown(aggregated, fields: dict[str, str]) -> str:
  lines = ['| family | swept value | ' + ' | '.join(h for h, _ in METRICS.values()) + ' |',
           '| --- | --- | ' + ' | '.join(['---'] * len(METRICS)) + ' |']
  for family, value, stats in aggregated:
    cells = [f'{stats[m][0]:{fmt}} ± {stats[m][1]:{fmt}}' for m, (_, fmt) in METRICS.items()]
    lines.append(f'| {family} | {fields[family].split(".")[-1]}={value:g} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot(aggregated, path: str, copy_to: str | None) -> None:
  panels = ('test/explained_variance', 'test/mmcs', 'test/dead_fraction')
  fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.2))
  for family in dict.fromkeys(a[0] for a in aggregated):
    points = sorted((s['test/l0'][0], s) for f, _, s in aggregated if f == family)
    l0 = [p[0] for p in points]
    for ax, metric in zip(axes, panels):
      mean = np.array([p[1][metric][0] for p in points])
      std = np.array([p[1][metric][1] for p in points])
      ax.errorbar(l0, mean, yerr=std, marker='o', capsize=2, label=family)
      ax.set_xscale('log')
      ax.set_xlabel('L0 (active latents per example)')
      ax.set_title(METRICS[metric][0], fontsize=9)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  for target in [path] + ([copy_to] if copy_to else []):
    fig.savefig(target, dpi=70)
  plt.close(fig)


def done_mean(args) -> str:
  """TopK, k = 4, at two sizes with 3x as many features as dimensions: MMCS and dead latents per seed."""
  lines = ['| features n | dimensions d | latents | MMCS (per seed) | dead latents (per seed) |',
           '| --- | --- | --- | --- | --- |']
  for n, d in ((96, 32), (60, 20)):
    config = base_config(args.epochs, {'data.superposition.num_features': n, 'data.superposition.dim': d,
                                       'data.superposition.probability': 3 / n, 'model.latent_dim': n})
    runs = sweep.axis('seed', range(args.seeds))
    summaries = sweep.run_sweep(config, runs, os.path.join(args.workdir, f'done_n{n}_d{d}'),
                                log=lambda line: print(f'[done n={n}] {line}'))
    s = [summaries[sweep.run_name(r)] for r in runs]
    lines.append(f'| {n} | {d} | {n} | ' + ', '.join(f'{x["test/mmcs"]:.3f}' for x in s) + ' | '
                 + ', '.join(f'{x["test/dead_fraction"]:.3f}' for x in s) + ' |')
  return '\n'.join(lines)


HIERARCHY = {'data.superposition.num_features': 64, 'data.superposition.dim': 48, 'data.superposition.hierarchy': 3,
             'data.superposition.probability': 0.1, 'model.latent_dim': 64}
CHILD_PROBABILITIES = (1.0, 0.5)
HIERARCHY_K = 3
HIERARCHY_PREFIXES = (16,)


def seeds_table(label_overrides: dict[str, dict], metrics: tuple[str, ...], args, name: str) -> list[str]:
  """One row per label: each metric per seed and their mean (a sweep over the seeds per label)."""
  lines = []
  for label, overrides in label_overrides.items():
    config = base_config(args.epochs, overrides)
    runs = sweep.axis('seed', range(args.seeds))
    workdir = os.path.join(args.workdir, name, ''.join(c if c.isalnum() or c in '=.' else '_' for c in label))
    summaries = sweep.run_sweep(config, runs, workdir, log=lambda line: print(f'[{name} {label}] {line}'))
    s = [summaries[sweep.run_name(r)] for r in runs]
    cells = [', '.join(f'{x.get(m, 0):.3f}' for x in s) + f' (mean {np.mean([x.get(m, 0) for x in s]):.3f})'
             for m in metrics]
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return lines


def hierarchy_study(args) -> str:
  """TopK against Matryoshka TopK at the same k (so the same L0) on hierarchical superposition data, for each
  of CHILD_PROBABILITIES: parent MMCS, absorption and L0 per seed."""
  labels = {}
  for c in CHILD_PROBABILITIES:
    base = {**HIERARCHY, 'data.superposition.child_probability': c, 'sae.activation': 'topk', 'sae.k': HIERARCHY_K}
    labels[f'TopK, child_probability={c:g}'] = base
    labels[f'Matryoshka TopK, child_probability={c:g}'] = {**base, 'sae.matryoshka_prefixes': HIERARCHY_PREFIXES}
  metrics = ('test/parent_mmcs', 'test/absorption', 'test/mmcs', 'test/l0', 'test/explained_variance')
  head = ['| SAE | parent MMCS | absorption | MMCS (all) | L0 | explained variance |', '| --- ' * 6 + '|']
  return '\n'.join(head + seeds_table(labels, metrics, args, 'hierarchy'))


def resample_study(args) -> str:
  """TopK, k = 2, AuxK off and a learning rate of 1e-2 (so that latents die), without resampling and with
  resampling every 400 or 200 steps (dead: no firing for 100 steps): dead latents on the test split per
  seed, and the latents resampled over training."""
  base = {'sae.activation': 'topk', 'sae.k': 2, 'sae.aux_weight': 0.0, 'sae.dead_steps': 100,
          'optimizer.learning_rate': 1e-2}
  labels = {'TopK k=2, no AuxK, lr 1e-2': base,
            'the same, resampling every 400 steps': {**base, 'sae.resample_every': 400},
            'the same, resampling every 200 steps': {**base, 'sae.resample_every': 200}}
  metrics = ('test/dead_fraction', 'test/explained_variance', 'test/mmcs', 'train/resampled')
  head = ['| SAE | dead latents | explained variance | MMCS | latents resampled |', '| --- ' * 5 + '|']
  return '\n'.join(head + seeds_table(labels, metrics, args, 'resample'))


def frontier(args) -> str:
  """Every family's sweep: the table (mean ± std over seeds) and the figure."""
  fams = families()
  rows = [row for label, (field, overrides, values) in fams.items()
          for row in run_family(label, field, overrides, values, args)]
  aggregated = aggregate(rows)
  plot(aggregated, os.path.join(args.workdir, 'sae_study.png'), args.figure)
  return (f'SAEs on superposition data (96 features in 32 dimensions, p = 1/32; 96 latents; {args.epochs} epochs, '
          f'{args.seeds} seeds; mean ± std over seeds)\n\n' + markdown(aggregated, {k: v[0] for k, v in fams.items()}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--epochs', type=int, default=8, help='epochs of every run')
  parser.add_argument('--seeds', type=int, default=3, help='seeds per swept value')
  parser.add_argument('--workdir', default=str(ROOT / 'runs' / 'sae_study'), help='the runs and the report')
  parser.add_argument('--figure', default=None, help='also copy the figure here (experiments/figures/sae_study.png)')
  parser.add_argument('--only', default='all', choices=('all', 'frontier', 'hierarchy', 'resample', 'target'),
                      help="one part of the study; 'all' is the frontier, hierarchy and resample parts")
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  parts = {'frontier': frontier, 'hierarchy': hierarchy_study, 'resample': resample_study, 'target': done_mean}
  names = ('frontier', 'hierarchy', 'resample') if args.only == 'all' else (args.only,)
  text = '\n\n'.join(f'## {name}\n\n{parts[name](args)}' for name in names)
  with open(os.path.join(args.workdir, f'sae_study_{args.only}.md'), 'w') as f:
    f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  main()
