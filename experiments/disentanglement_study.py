"""Disentanglement as a population study on shapes2d (Locatello et al. 2019, at CPU scale).

  python experiments/disentanglement_study.py [--out=runs/disentanglement] [--seeds=2] [--epochs=10]
      [--counts=3,3,8,8,8] [--size=32] [--full]
  python experiments/disentanglement_study.py --check_epochs=40      # MIG: beta-VAE (beta 1) vs truth, random
      [--check_seeds=3] [--check_net=paper|small]
  python experiments/disentanglement_study.py --protocol=dlib --data=shapes2d --reduced --seeds=3 \
      --methods=beta_vae --steps=2000 --docs=docs/results/disentanglement.md    # the protocol, CPU-sized
  python experiments/disentanglement_study.py --protocol=dlib --data=dsprites=FILE --seeds=5   # an accelerator's

``--protocol=dlib`` (experiments/dlib_protocol.py): the populations of configs/dlib (Locatello et al.
2019: the conv nets, Adam 1e-4, batch 64, ``--steps`` steps, default 300,000) for ``--methods`` (default
all six: beta_vae, annealed_vae, factor_vae, dip_vae_i, dip_vae_ii, beta_tcvae), each published grid x
``--seeds`` as one program, on ``--data`` (any data arg; shapes2d by default). ``--reduced``: a 4,608-image
16-pixel shapes2d grid, three weights of each grid, Adam 1e-3, the metrics on 1,000 codes. Every model gets every
metric (MIG, SAP, DCI, modularity, the BetaVAE and FactorVAE scores, IRS, the unsupervised scores) and
its UDR against the other seeds of its weight (``--udr_points`` inputs). Writes ``OUT/dlib_protocol.{json,md}``
and, with ``--docs=PAGE``, the table between the page's ``<!-- dlib-protocol:start/end -->`` markers.
``--reuse=EARLIER/dlib_protocol.json`` adds the populations an earlier invocation measured (with the same
protocol arguments) that this one does not run, so that methods run at different times share one table.

Trains beta-VAE (vae.kl_weight), beta-TCVAE (beta_tcvae.tc_weight), FactorVAE (factor_vae.tc_weight) and
DIP-VAE-II (dip_vae.dip_lambda_od = dip_vae.dip_lambda_d), 6 values of each one's weight x ``--seeds`` seeds,
on the shapes2d grid ``--counts`` (shape, scale, orientation, x, y) of ``--size`` pixels. Each method's
runs are ONE sweep group: one compiled program with the models stacked on a leading axis
(``aelab.train.sweep.run_sweep``; its log line says ``N models in one program``). Every run ends with the
disentanglement metrics (``aelab/disentanglement.py``) in its summary.json. ``--full`` is the issue's
grid: 64 x 64 images, every factor value, 5 seeds, the paper's nets (an accelerator's job).

Writes ``OUT/disentanglement_study.{json,md}`` (per method and weight: mean and std over seeds of each
metric; the Spearman rank correlation between the metrics over all models; the share of each metric's
variance explained by the weight and by the seed), ``experiments/figures/disentanglement_vs_weight.png``
and ``experiments/figures/disentanglement_rank_correlation.png``. Also scores the ground-truth factors
(the factor values as codes, for the scores that encode images an encoder that looks an image's factors
up: rotations under which a sprite is symmetric draw the same image, so it cannot score 1) and randomly
initialised encoders as references.
"""
import os
import sys
import time

import jax
import matplotlib
import numpy as np

matplotlib.use('Agg')
import common  # experiments/common.py, beside this file
import matplotlib.pyplot as plt
from scipy import stats

from aelab.eval import disentanglement, evaluators, metrics

from aelab import models

from aelab.data import shapes2d

from aelab.train import sweep
from aelab import config as config_lib

METRICS = ('mig', 'sap', 'dci_disentanglement', 'dci_completeness', 'dci_informativeness', 'modularity',
           'beta_vae_score', 'factor_vae_score')
# method -> (config file, swept fields (all set to the weight), weights)
METHODS = {
    'beta_vae': ('vae', ('vae.kl_weight',), (1, 2, 4, 6, 8, 16)),
    'beta_tcvae': ('beta_tcvae', ('beta_tcvae.tc_weight',), (1, 2, 4, 6, 8, 10)),
    'factor_vae': ('factor_vae', ('factor_vae.tc_weight',), (10, 20, 30, 40, 50, 100)),
    'dip_vae_ii': ('dip_vae', ('dip_vae.dip_lambda_od', 'dip_vae.dip_lambda_d'), (1, 2, 5, 10, 20, 50)),
}


def method_config(name: str, args):
  config = common.load_config(METHODS[name][0], 'shapes2d')
  config.train.figures_every = 0
  if args.full:
    config.eval.dci_model = 'gbt'
    return config
  config.data.shapes2d.update(counts=tuple(args.counts), size=args.size)
  config.model.hidden = (256,)
  config.optimizer.learning_rate = 1e-3
  config.train.update(num_epochs=args.epochs, checkpoint_every=args.epochs)
  config.eval.update(disent_points=1000, score_points=(200, 100), dci_model='forest')
  if 'factor_vae' in config:
    config.factor_vae.update(disc_hidden=(256, 256), disc_learning_rate=1e-3)
  return config


def method_sweep(name: str, seeds: int):
  fields, weights = METHODS[name][1], METHODS[name][2]
  by_weight = [{f: float(w) for f in fields} for w in weights]
  return sweep.product(by_weight, sweep.axis('seed', list(range(seeds))))


def references(config, seeds: int) -> dict:
  """Metrics of the ground-truth factors as codes and of randomly initialised encoders (no training)."""
  grid = shapes2d.Shapes2D(tuple(config.data.shapes2d.counts), config.data.shapes2d.size)
  d = config.eval
  truth = evaluators.score_encoder(factor_lookup(grid), grid, config)
  rng = np.random.default_rng(metrics.EVAL_SEED)
  f, ft = grid.sample_factors(d.disent_points, rng), grid.sample_factors(d.disent_points // 2, rng)
  dci = disentanglement.dci(f * 1.0, f, ft * 1.0, ft, d.dci_model)
  values = {'test/mig': disentanglement.mig(f * 1.0, f), 'test/sap': disentanglement.sap(f * 1.0, f, ft * 1.0, ft),
            'test/modularity': disentanglement.modularity(f * 1.0, f),
            **{f'test/dci_{k}': v for k, v in dci.items()}, 'test/beta_vae_score': float('nan'),
            'test/factor_vae_score': float('nan')}
  random = []
  for seed in range(seeds):
    config.seed = seed
    family = models.get(config, (grid.size, grid.size, 1))
    params = family.init(jax.random.split(jax.random.key(seed))[0], np.zeros((1, grid.size ** 2), np.float32))
    encode = jax.jit(family.encode)
    random.append(evaluators.score_encoder(lambda x, p=params, f=encode: np.asarray(f(p, x)), grid, config))
  return {'factor_values': values, 'ground_truth_encoder': truth,
          'random_init': {k: float(np.mean([r[k] for r in random])) for k in truth}}


def factor_lookup(grid):
  """``encode(x_NxD) -> factors_NxK``: the factors of each image of ``grid``, looked up by its pixels
  (the perfectly disentangled code; an image that several factor vectors draw gets one of them)."""
  table = {row.tobytes(): f for row, f in zip(grid.images(grid.all_factors()), grid.all_factors())}
  return lambda x_NxD: np.stack([table[row.tobytes()] for row in np.asarray(x_NxD, np.float32)]).astype(np.float64)


def beta1_check(args) -> dict:
  """The issue's check: MIG of beta-VAEs with beta = 1 trained ``--check_epochs`` epochs (``--check_seeds``
  seeds), against the factor values as codes and randomly initialised encoders of the same seeds, all on
  the same ``--check_points`` samples. ``--check_net=paper`` (default): the MLP 1200-1200 and Adam 1e-4 of
  Chen et al. 2018 / Locatello et al. 2019 (``aelab.data.sources.shapes2d.adapt``); ``small``: the study's 256, 1e-3."""
  from aelab.train import engine  # noqa: PLC0415
  config = method_config('beta_vae', args)
  if args.check_net == 'paper':
    config.model.hidden, config.optimizer.learning_rate = (1200, 1200), 1e-4
  config.train.update(num_epochs=args.check_epochs, checkpoint_every=args.check_epochs)
  config.eval.update(disent_points=args.check_points, score_points=(20, 20))  # only MIG is compared
  grid = shapes2d.Shapes2D(tuple(config.data.shapes2d.counts), config.data.shapes2d.size)
  factors = grid.sample_factors(args.check_points, np.random.default_rng(metrics.EVAL_SEED))  # as evaluate's
  trained, random = [], []
  for seed in range(args.check_seeds):
    config.seed = seed
    summary = engine.train_and_evaluate(config, os.path.join(args.out, f'beta1_check_{args.check_net}_{seed}'))
    trained.append(summary['test/mig'])
    family = models.get(config, (grid.size, grid.size, 1))
    params = family.init(jax.random.split(jax.random.key(seed))[0], np.zeros((1, grid.size ** 2), np.float32))
    random.append(disentanglement.mig(np.asarray(jax.jit(family.encode)(params, grid.images(factors))), factors))
  return {'beta_vae_1': trained, 'random_init': random, 'factor_values': disentanglement.mig(factors * 1.0, factors),
          'net': args.check_net, 'epochs': args.check_epochs, 'points': args.check_points,
          'holds': bool(np.mean(trained) > np.mean(random))}


def variance_shares(values_WxS: np.ndarray) -> tuple[float, float]:
  """Shares of the total sum of squares explained by the weight (rows) and by the seed (columns)."""
  total = np.sum(np.square(values_WxS - values_WxS.mean()))
  if total == 0:
    return 0.0, 0.0
  weight = values_WxS.shape[1] * np.sum(np.square(values_WxS.mean(1) - values_WxS.mean()))
  seed = values_WxS.shape[0] * np.sum(np.square(values_WxS.mean(0) - values_WxS.mean()))
  return float(weight / total), float(seed / total)


def main():
  parser = common.parser(__doc__, 'runs/disentanglement')
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--epochs', type=int, default=10)
  parser.add_argument('--counts', type=lambda s: [int(c) for c in s.split(',')], default=[3, 3, 8, 8, 8])
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--methods', default=None, help='comma-separated (default: every method of the protocol)')
  parser.add_argument('--protocol', choices=('shapes2d', 'dlib'), default='shapes2d')
  parser.add_argument('--reduced', action='store_true', help='dlib: the CPU-sized grid and metrics')
  parser.add_argument('--steps', type=int, default=300_000, help='dlib: training steps of each model')
  parser.add_argument('--udr_points', type=int, default=1000, help='dlib: inputs every model encodes for UDR')
  parser.add_argument('--docs', default=None, help='dlib: the docs page to write the table into')
  parser.add_argument('--reuse', default=None, help='dlib: an earlier OUT/dlib_protocol.json whose other methods '
                      'join the tables as measured then (same --data, --reduced, --steps, --seeds, --udr_points)')
  parser.add_argument('--full', action='store_true')
  parser.add_argument('--check_epochs', type=int, default=0, help='only the beta = 1 MIG check, this many epochs')
  parser.add_argument('--check_points', type=int, default=5000)
  parser.add_argument('--check_seeds', type=int, default=3)
  parser.add_argument('--check_net', choices=('paper', 'small'), default='paper')
  args = parser.parse_args()
  if args.protocol == 'dlib':
    import dlib_protocol  # noqa: PLC0415  (experiments/dlib_protocol.py, beside this file)
    args.data = 'shapes2d' if args.data == 'digits' else args.data
    args.methods = args.methods or ','.join(dlib_protocol.config_lib.load_module(
        str(common.ROOT / 'configs' / 'dlib' / 'sweeps.py'), 'sweep').GRIDS)
    dlib_protocol.main(args, 'python ' + ' '.join(sys.argv))
    return
  args.methods = args.methods or ','.join(METHODS)
  if args.check_epochs:
    print(beta1_check(args))
    return
  if args.full:
    args.seeds = 5
  started = time.time()
  results = {'args': {k: v for k, v in vars(args).items()}, 'methods': {}}
  values = {}  # method -> metric -> W x S
  for name in args.methods.split(','):
    config = method_config(name, args)
    config_lib.validate(config)
    t0 = time.time()
    summaries = sweep.run_sweep(config, method_sweep(name, args.seeds), os.path.join(args.out, name),
                                log=lambda line, name=name: print(f'[{name}] {line}', flush=True))
    print(f'[{name}] {len(summaries)} runs in {time.time() - t0:.0f} s', flush=True)
    members = sweep.members(config, method_sweep(name, args.seeds))
    weights = METHODS[name][2]
    values[name] = {m: np.array([summaries[r.name][f'test/{m}'] for r in members]).reshape(len(weights), args.seeds)
                    for m in METRICS}
    results['methods'][name] = {'weights': list(weights), 'field': METHODS[name][1],
                                **{m: v.tolist() for m, v in values[name].items()}}
  results['references'] = references(method_config('beta_vae', args), args.seeds)
  all_models = np.stack([np.concatenate([values[n][m].ravel() for n in values]) for m in METRICS])
  rho = stats.spearmanr(all_models, axis=1).statistic
  results['rank_correlation'] = np.asarray(rho).tolist()
  results['variance_shares'] = {n: {m: variance_shares(values[n][m]) for m in METRICS} for n in values}
  common.write_results(args.out, 'disentanglement_study', results, tables(results, values, rho), started, args.json)
  plot(values, rho, args)


def tables(results, values, rho) -> str:
  short = {'mig': 'MIG', 'sap': 'SAP', 'dci_disentanglement': 'DCI-D', 'dci_completeness': 'DCI-C',
           'dci_informativeness': 'DCI-I', 'modularity': 'Mod', 'beta_vae_score': 'BetaVAE',
           'factor_vae_score': 'FactorVAE'}
  rows = []
  for name, v in values.items():
    for i, w in enumerate(results['methods'][name]['weights']):
      cells = {short[m]: f'{v[m][i].mean():.2f} ± {v[m][i].std():.2f}' for m in METRICS}
      rows.append({'method': name, 'weight': w, **cells})
  for ref, r in results['references'].items():
    rows.append({'method': ref, 'weight': '-', **{short[m]: f'{r["test/" + m]:.2f}' for m in METRICS}})
  out = [common.markdown_table(rows, ['method', 'weight', *short.values()])]
  out.append('\nSpearman rank correlation over all models:\n')
  out.append(common.markdown_table([{'': short[a], **{short[b]: f'{rho[i][j]:.2f}' for j, b in enumerate(METRICS)}}
                                    for i, a in enumerate(METRICS)], ['', *short.values()]))
  out.append('\nShare of variance explained by the weight / by the seed:\n')
  out.append(common.markdown_table(
      [{'method': n, **{short[m]: '{:.2f} / {:.2f}'.format(*results['variance_shares'][n][m]) for m in METRICS}}
       for n in values], ['method', *short.values()]))
  return '\n'.join(out)


def plot(values, rho, args):
  figures = common.ROOT / 'experiments' / 'figures'
  fig, axes = plt.subplots(len(values), len(METRICS), figsize=(2.2 * len(METRICS), 2.0 * len(values)), squeeze=False)
  for i, (name, v) in enumerate(values.items()):
    weights = METHODS[name][2]
    for j, m in enumerate(METRICS):
      ax = axes[i, j]
      ax.errorbar(weights, v[m].mean(1), yerr=v[m].std(1), marker='o', ms=3, capsize=2)
      for s in range(v[m].shape[1]):
        ax.plot(weights, v[m][:, s], '.', color='gray', ms=2)
      ax.set_xscale('log')
      ax.set_title(f'{name}: {m}', fontsize=7)
      ax.tick_params(labelsize=6)
  fig.tight_layout()
  fig.savefig(figures / 'disentanglement_vs_weight.png', dpi=70)
  fig, ax = plt.subplots(figsize=(5, 4.2))
  im = ax.imshow(rho, vmin=-1, vmax=1, cmap='RdBu_r')
  ax.set_xticks(range(len(METRICS)), METRICS, rotation=60, fontsize=7, ha='right')
  ax.set_yticks(range(len(METRICS)), METRICS, fontsize=7)
  fig.colorbar(im)
  ax.set_title('Spearman rank correlation (all models)', fontsize=8)
  fig.tight_layout()
  fig.savefig(figures / 'disentanglement_rank_correlation.png', dpi=80)


if __name__ == '__main__':
  main()
