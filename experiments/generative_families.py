"""The generative families of aelab/models (wae, info_vae, rae, vamp, miwae, piwae, ciwae) beside the VAE, one run
each with its bundled config: test NLL, negative ELBO, reconstruction and wall time.

  python experiments/generative_families.py                              # bundled digits, offline
  python experiments/generative_families.py --data=idx=../shared/data/mnist --epochs=20 --k=1000

Trains ``configs/<name>.py:DATA`` (784-400-20 or 64-400-20 on digits, seed 0; the same widths for every family)
into ``OUT/<name>`` (a finished run is only re-read) and prints a markdown table: ``test/nll`` (importance-sampled
``-log p(x)`` with ``--k`` samples, nats per example; families with a likelihood), ``test/neg_elbo`` (nats per
example, one posterior sample), ``test/recon_bce`` (nats per example, decoding the posterior mean or the code) and
the wall time of the run (training, compilation and evaluation, seconds, on whatever machine runs it).
"""

import common  # experiments/common.py, beside this file


FAMILIES = ('vae', 'vamp', 'info_vae', 'miwae', 'piwae', 'ciwae', 'iwae', 'wae', 'rae')


def cell(summary: dict, key: str) -> str:
  return f'{summary[key]:.2f}' if key in summary else '-'


def main():
  parser = common.parser(__doc__, 'runs/generative_families')
  parser.add_argument('--epochs', type=int, default=None, help="train.num_epochs (default: the config's)")
  parser.add_argument('--k', type=int, default=1000, help='importance samples of test/nll')
  parser.add_argument('--families', default=','.join(FAMILIES))
  args = parser.parse_args()
  print('| family | test/nll | test/neg_elbo | test/recon_bce | wall s |\n| --- | --- | --- | --- | --- |', flush=True)
  for name in args.families.split(','):
    summary, seconds = common.train_family(name, args.data, args.out, args.epochs, args.k)
    s = {**summary, 'wall_s': seconds}
    print(f"| {name} | {cell(s, 'test/nll')} | {cell(s, 'test/neg_elbo')} | {cell(s, 'test/recon_bce')} | "
          f"{s['wall_s']:.0f} |", flush=True)


if __name__ == '__main__':
  main()
