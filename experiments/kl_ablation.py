"""KL-weight (beta) ablation of the VAE: reconstruction, KL, test ELBO and active units against beta.

  python experiments/kl_ablation.py --figure=experiments/figures/kl_ablation.png   # real MNIST, 10 epochs
  python experiments/kl_ablation.py --data=digits --epochs=3 --seeds=1 --workdir=/tmp/kl   # quick, offline

Trains ``configs/sweeps/kl_weight.py`` (beta in 0.1 ... 16 x seeds) over ``configs/vae.py`` as one
vectorized program (finished runs are skipped, so a rerun only rewrites the report), then writes
``<workdir>/kl_ablation.md`` (mean ± std over seeds) and ``kl_ablation.png``. Metrics on the test split:
``test/recon_bce`` (-log p(x|z), nats per example), ``test/kl`` (nats per example), ``test/neg_elbo``
(nats per example, one posterior sample, always with weight 1 on the KL) and active units (latent
dimensions whose posterior mean varies over the test set by more than 0.01; Burda et al. 2016).
"""
import _ablation
import matplotlib.pyplot as plt

from aelab import api

from aelab.eval import metrics

from aelab.train import sweep

COLUMNS = {'test/recon_bce': ('reconstruction (nats)', '.2f'), 'test/kl': ('KL (nats)', '.2f'),
           'test/neg_elbo': ('test -ELBO (nats)', '.2f'), 'active_units': ('active units (of 20)', '.1f')}


def active_units_of(member: sweep.Member, trained: api.Trained) -> dict[str, float]:
  """Active units of the run's posterior means ``E_q[z|x]`` on the test split."""
  mean = _ablation.encode_test(member, trained)  # the VAE family's encode: the posterior mean
  return {'active_units': float(metrics.active_units(mean))}


def main() -> None:
  args = _ablation.parse_args(__doc__, 'kl_ablation')
  config, rows = _ablation.run(args, 'configs/vae.py', 'configs/sweeps/kl_weight.py', active_units_of)
  aggregated = _ablation.aggregate(rows, 'vae.kl_weight', COLUMNS)
  fig, axes = plt.subplots(1, len(COLUMNS), figsize=(3.0 * len(COLUMNS), 2.7))
  _ablation.plot_row(axes, aggregated, COLUMNS, 'KL weight beta', {'value': 'log'})
  figure = _ablation.save_figure(fig, args.workdir, 'kl_ablation', args.figure)
  _ablation.write_report(args.workdir, 'kl_ablation', (
      f'VAE {tuple(config.model.hidden)}-{config.model.latent_dim}, {_ablation.data_label(config)} '
      f'({len(rows)} runs, {args.epochs} epochs, {args.seeds} seeds; mean ± std over seeds)\n\n'
      + _ablation.markdown_table(aggregated, 'beta', COLUMNS) + f'\n\nfigure: {figure}'))


if __name__ == '__main__':
  main()
