"""The dlib protocol of ``disentanglement_study.py --protocol=dlib``: the populations of configs/dlib (Locatello
et al. 2019) on one source, every metric of each model, UDR over each weight's seeds, and the docs table.

A helper module of experiments/disentanglement_study.py (see its docstring for the commands)."""
import json
import math
import os
import re
import time

import jax
import numpy as np
from scipy import stats

import common  # experiments/common.py, beside this file

import aelab
from aelab import config as config_lib
from aelab import data, models
from aelab.data import shapes2d
from aelab.eval import disentanglement
from aelab.models import vae
from aelab.train import sweep

SUPERVISED = ('mig', 'sap', 'dci_disentanglement', 'dci_completeness', 'dci_informativeness', 'modularity',
              'beta_vae_score', 'factor_vae_score', 'irs')
METRICS = (*SUPERVISED, *disentanglement.UNSUPERVISED, 'udr')
SHORT = {'mig': 'MIG', 'sap': 'SAP', 'dci_disentanglement': 'DCI-D', 'dci_completeness': 'DCI-C',
         'dci_informativeness': 'DCI-I', 'modularity': 'Mod', 'beta_vae_score': 'BetaVAE',
         'factor_vae_score': 'FactorVAE', 'irs': 'IRS', 'gaussian_total_correlation': 'GTC',
         'gaussian_wasserstein_correlation': 'GWC', 'gaussian_wasserstein_correlation_norm': 'GWC-n',
         'mutual_info_score': 'MI', 'udr': 'UDR'}
# --reduced: a 4,608-image shapes2d grid of 16 pixels (the four stride-2 convolutions end at 1 x 1), three
# weights of each grid (smallest, middle, largest), Adam at 1e-3, the metrics on 1,000 codes, the two
# intervention scores on 50 / 25 points; AnnealedVAE's capacity ramp scaled to the steps (the published 100,000 of
# 300,000: a third of training).
REDUCED = {'counts': (3, 3, 8, 8, 8), 'size': 16, 'weights': (0, 2, 5), 'learning_rate': 1e-3}
MARKERS = ('<!-- dlib-protocol:start -->', '<!-- dlib-protocol:end -->')


def method_config(method: str, args):
  """configs/dlib/base.py for ``method`` on ``args.data`` with ``args.steps`` steps (``--reduced``: the
  small grid, Adam at 1e-3, the metrics on fewer points, a 2 x 256 FactorVAE discriminator, AnnealedVAE's capacity
  ramp over the same share of ``args.steps`` as the published 100,000 of 300,000)."""
  base = config_lib.load_module(str(common.ROOT / 'configs' / 'dlib' / 'base.py'), 'config')
  config = base.get_config(f'method={method},data={args.data},steps={args.steps}')
  if args.reduced:
    if config.data.name == 'shapes2d':
      config.data.shapes2d.update(counts=REDUCED['counts'], size=REDUCED['size'])
    config.eval.update(disent_points=1000, score_points=(50, 25), dci_model='forest')
    config.optimizer.learning_rate = REDUCED['learning_rate']
    if 'factor_vae' in config:
      config.factor_vae.disc_hidden = (256, 256)
    if 'vae' in config and config.vae.capacity_weight > 0:  # AnnealedVAE: the published third
      config.vae.capacity_steps = max(1, round(args.steps * config.vae.capacity_steps / base.STEPS))
  size = base.train_size(config)
  if size:
    config.train.num_epochs = math.ceil(args.steps * config.train.batch_size / size)
  config.train.checkpoint_every = config.train.num_epochs
  config_lib.validate(config)
  return config


def method_sweep(method: str, args) -> list[dict]:
  grids = config_lib.load_module(str(common.ROOT / 'configs' / 'dlib' / 'sweeps.py'), 'sweep')
  published = next(iter(grids.GRIDS[method].values()))
  values = [published[i] for i in REDUCED['weights']] if args.reduced else published
  return sweep.product(grids.weights(method, values), sweep.axis('seed', range(args.seeds)))


def udr_inputs(config, num: int) -> np.ndarray:
  """``num`` inputs ``x_NxD`` in [0, 1] that every model of a population encodes for UDR: images of
  random factors for shapes2d, else the first of the test split."""
  rng = np.random.default_rng(0)
  if config.data.name == 'shapes2d':
    grid = shapes2d.Shapes2D(tuple(config.data.shapes2d.counts), config.data.shapes2d.size)
    return grid.images(grid.sample_factors(num, rng))
  x = np.asarray(data.load(config.data).test[:num], np.float32).reshape(num, -1)
  return x / 255.0 if x.max() > 1 else x


def posterior_means_and_kl(trained, x_NxD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The posterior means ``N x Z`` of a run of the VAE families and each dimension's mean KL to the prior,
  ``Z`` nats (a FactorVAE's parameters hold its VAE's under ``'vae'``)."""
  model, params = trained.family.model, trained.params
  if isinstance(params, dict) and 'vae' in params:
    model, params = model.vae, params['vae']
  mean, log_var = jax.jit(lambda p, x: model.apply(p, x, method=vae.Model.encode))(params, x_NxD)
  mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
  return mean, np.mean(0.5 * (mean ** 2 + np.exp(log_var) - log_var - 1.0), axis=0)


def population_udr(workdir: str, members, x_NxD: np.ndarray, seeds: int) -> np.ndarray:
  """UDR (Spearman, dlib's KL filter) of each run against the other seeds of its weight: ``W x S``."""
  codes = [posterior_means_and_kl(aelab.load(sweep.run_dir(workdir, m)), x_NxD) for m in members]
  out = []
  for w in range(len(members) // seeds):
    group = codes[w * seeds:(w + 1) * seeds]
    out.append(disentanglement.udr([c for c, _ in group], [kl for _, kl in group]))
  return np.array(out)


def run_method(method: str, args) -> dict:
  config = method_config(method, args)
  runs = method_sweep(method, args)
  workdir = os.path.join(args.out, 'dlib', method)
  t0 = time.time()
  summaries = sweep.run_sweep(config, runs, workdir, log=lambda line: print(f'[{method}] {line}', flush=True))
  members = sweep.members(config, runs)
  weights = sorted({float(m.overrides[next(iter(m.overrides))]) for m in members})
  shape = (len(weights), args.seeds)
  values = {m: np.array([summaries[r.name][f'test/{m}'] for r in members]).reshape(shape) for m in METRICS[:-1]}
  values['udr'] = population_udr(workdir, members, udr_inputs(config, args.udr_points), args.seeds)
  print(f'[{method}] {len(members)} runs, {config.train.num_epochs} epochs, in {time.time() - t0:.0f} s', flush=True)
  return {'weights': weights, 'field': next(iter(runs[0])), 'epochs': config.train.num_epochs,
          'seconds': time.time() - t0, **{m: v.tolist() for m, v in values.items()}}


def random_init_mig(args, seeds: int) -> float:
  """MIG of randomly initialised beta-VAE encoders of the protocol (no training), same points as training's."""
  config = method_config('beta_vae', args)
  grid = shapes2d.Shapes2D(tuple(config.data.shapes2d.counts), config.data.shapes2d.size)
  from aelab.eval import metrics  # noqa: PLC0415
  factors = grid.sample_factors(config.eval.disent_points, np.random.default_rng(metrics.EVAL_SEED))
  migs = []
  for seed in range(seeds):
    config.seed = seed
    family = models.get(config, (grid.size, grid.size, 1))
    params = family.init(jax.random.split(jax.random.key(seed))[0], np.zeros((1, grid.size ** 2), np.float32))
    migs.append(disentanglement.mig(np.asarray(jax.jit(family.encode)(params, grid.images(factors))), factors))
  return float(np.mean(migs))


def selection(results: dict) -> list[dict]:
  """Per method: the weight UDR selects (highest mean over seeds), the one MIG would, and the Spearman
  correlation over the method's models between UDR and MIG."""
  rows = []
  for method, r in results.items():
    udr_WxS, mig_WxS = np.array(r['udr']), np.array(r['mig'])
    rho = stats.spearmanr(udr_WxS.ravel(), mig_WxS.ravel()).statistic
    best = int(np.argmax(udr_WxS.mean(1)))
    rows.append({'method': method, 'UDR picks': r['weights'][best], 'its MIG': f'{mig_WxS[best].mean():.3f}',
                 'MIG picks': r['weights'][int(np.argmax(mig_WxS.mean(1)))],
                 'best MIG': f'{mig_WxS.mean(1).max():.3f}', 'Spearman(UDR, MIG)': f'{rho:.2f}'})
  return rows


def rank_correlation(values_MxN: np.ndarray) -> np.ndarray:
  """Spearman's correlation between the rows (metrics) over the columns (models): ``M x M``; NaN for a
  metric constant over the models or with a NaN."""
  ranks = stats.rankdata(values_MxN, axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    centered = ranks - ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.sum(centered ** 2, axis=1))
    return centered @ centered.T / np.outer(norm, norm)


def tables(results: dict, reference: dict) -> tuple[str, np.ndarray]:
  rows = []
  for method, r in results.items():
    for i, w in enumerate(r['weights']):
      cells = {SHORT[m]: f'{np.mean(r[m][i]):.2f} ± {np.std(r[m][i]):.2f}' for m in METRICS}
      rows.append({'method': method, 'weight': f'{r["field"]}={w:g}', **cells})
  out = ['Every metric per method and weight (mean ± std over seeds):\n',
         common.markdown_table(rows, ['method', 'weight', *(SHORT[m] for m in METRICS)])]
  all_models = np.stack([np.concatenate([np.ravel(r[m]) for r in results.values()]) for m in METRICS])
  rho = rank_correlation(all_models)
  out += ['\nSpearman rank correlation between the metrics over all models:\n',
          common.markdown_table([{'': SHORT[a], **{SHORT[b]: f'{rho[i][j]:.2f}' for j, b in enumerate(METRICS)}}
                                 for i, a in enumerate(METRICS)], ['', *(SHORT[m] for m in METRICS)])]
  sel = selection(results)
  out += ['\nUDR model selection over seeds (Duan et al. 2020):\n', common.markdown_table(sel, list(sel[0]))]
  if reference:
    out.append(f'\nMIG of randomly initialised encoders (mean of {reference["seeds"]}): '
               f'{reference["random_init_mig"]:.3f}; beta-VAE population mean MIG: {reference["beta_vae_mig"]:.3f}.')
  return '\n'.join(out), rho


def write_docs(path: str, command: str, table: str, seconds: float) -> None:
  """Puts ``table`` with the command and wall time between the page's markers (appended when absent)."""
  body = (f'{MARKERS[0]}\n\nMeasured with `{command}` ({seconds / 60:.0f} minutes of wall time on this '
          f'machine).\n\n{table}\n\n{MARKERS[1]}')
  text = open(path).read() if os.path.exists(path) else ''
  pattern = re.escape(MARKERS[0]) + '.*?' + re.escape(MARKERS[1])
  text = re.sub(pattern, lambda _: body, text, flags=re.S) if MARKERS[0] in text else text.rstrip() + '\n\n' + body
  with open(path, 'w') as f:
    f.write(text.rstrip() + '\n')


# The arguments a reused population must share with this invocation (--reuse).
SAME = ('data', 'reduced', 'steps', 'seeds', 'udr_points')


def reused(path: str | None, args, run: list[str]) -> dict:
  """The populations of an earlier invocation's ``dlib_protocol.json`` (``--reuse``) that this one does not
  run, as measured then; exits with one line when its protocol arguments (:data:`SAME`) differ."""
  if not path:
    return {}
  earlier = json.load(open(path))
  differ = [f'{k}={earlier["args"].get(k)!r} (now {getattr(args, k)!r})' for k in SAME
            if earlier['args'].get(k) != getattr(args, k)]
  if differ:
    raise SystemExit(f'error: --reuse={path} was measured with {", ".join(differ)}; rerun those methods instead.')
  return {m: r for m, r in earlier['methods'].items() if m not in run}


def main(args, command: str) -> None:
  started = time.time()
  run = args.methods.split(',')
  results = {**reused(getattr(args, 'reuse', None), args, run), **{method: run_method(method, args) for method in run}}
  reference = {}
  if 'beta_vae' in results and method_config('beta_vae', args).data.name == 'shapes2d':
    reference = {'random_init_mig': random_init_mig(args, args.seeds), 'seeds': args.seeds,
                 'beta_vae_mig': float(np.mean(results['beta_vae']['mig']))}
    reference['holds'] = reference['beta_vae_mig'] > reference['random_init_mig']
  table, rho = tables(results, reference)
  out = {'args': vars(args), 'methods': results, 'reference': reference, 'rank_correlation': rho.tolist(),
         'reused': sorted(set(results) - set(run))}
  common.write_results(args.out, 'dlib_protocol', out, table, started, args.json)
  if args.docs:
    write_docs(args.docs, command, table, time.time() - started)
