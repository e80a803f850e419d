"""Sparsity ablation of the sparse autoencoder: reconstruction, mean activation, L0 and dead units
against the L1 penalty weight (ReLU code) and the KL-sparsity target rho (sigmoid code, weight 1).

  python experiments/sparsity_ablation.py --figure=experiments/figures/sparsity_ablation.png   # real MNIST
  python experiments/sparsity_ablation.py --data=digits --epochs=3 --seeds=1 --workdir=/tmp/sp   # quick

Trains ``configs/sweeps/sparsity.py`` over ``configs/sparse.py`` (two groups, two vectorized programs;
finished runs are skipped), then writes ``<workdir>/sparsity_ablation.md`` (mean ± std over seeds) and
``sparsity_ablation.png``. Metrics on the test split: ``test/recon_bce`` (nats per example),
``test/code_mean_abs`` (mean activation of the code), ``test/code_frac_zero`` (L0: fraction of code
units below 1e-3 in magnitude, per example) and dead units (code units below 1e-3 on every test image).
"""
import _ablation
import matplotlib.pyplot as plt
import numpy as np

from aelab import api

from aelab.train import sweep

COLUMNS = {'test/recon_bce': ('reconstruction (nats)', '.2f'), 'test/code_mean_abs': ('mean activation', '.4f'),
           'test/code_frac_zero': ('L0: fraction near zero', '.3f'), 'dead_units': ('dead units', '.1f')}
DEAD_THRESHOLD = 1e-3  # the threshold of test/code_frac_zero


def dead_units_of(member: sweep.Member, trained: api.Trained) -> dict[str, float]:
  """Code units whose magnitude stays below DEAD_THRESHOLD on every test image."""
  code = _ablation.encode_test(member, trained)
  return {'dead_units': float(np.sum(np.max(np.abs(code), axis=0) < DEAD_THRESHOLD))}


def main() -> None:
  args = _ablation.parse_args(__doc__, 'sparsity_ablation')
  config, rows = _ablation.run(args, 'configs/sparse.py', 'configs/sweeps/sparsity.py', dead_units_of)
  parts = (('l1', 'penalty.weight', 'L1 weight', {'value': 'symlog', 'linthresh': 1e-3}),
           ('kl_sparsity', 'penalty.target', 'KL-sparsity target rho', {'value': 'log'}))
  fig, axes = plt.subplots(len(parts), len(COLUMNS), figsize=(3.0 * len(COLUMNS), 2.7 * len(parts)), squeeze=False)
  tables = []
  for row_axes, (penalty, by, label, xscale) in zip(axes, parts):
    aggregated = _ablation.aggregate([r for r in rows if r['penalty.name'] == penalty], by, COLUMNS)
    _ablation.plot_row(row_axes, aggregated, COLUMNS, label, xscale)
    tables.append(f'{penalty} penalty\n\n' + _ablation.markdown_table(aggregated, label, COLUMNS))
  figure = _ablation.save_figure(fig, args.workdir, 'sparsity_ablation', args.figure)
  _ablation.write_report(args.workdir, 'sparsity_ablation', (
      f'Sparse AE {_ablation.data_label(config)}, code of {config.model.latent_dim} units '
      f'({len(rows)} runs, {args.epochs} epochs, {args.seeds} seeds; mean ± std over seeds)\n\n'
      + '\n\n'.join(tables) + f'\n\nfigure: {figure}'))


if __name__ == '__main__':
  main()
