"""The conditional VAE beside the VAE of the same size: test NLL (``-log p(x|y)`` against ``-log p(x)``), and
whether its samples show the class they were drawn for.

  nice -n 15 python experiments/cvae_labels.py                      # bundled digits, offline
  nice -n 15 python experiments/cvae_labels.py --data=idx=../shared/data/mnist --epochs=20

Trains ``configs/vae.py:DATA`` and ``configs/cvae.py:DATA`` (the same 784-400-20 / 64-400-20 nets, seed 0) into
``OUT/<name>`` (a finished run is only re-read) and prints a markdown table: ``test/nll`` (importance-sampled with
``--k`` samples, nats per example; the CVAE's is ``-log p(x|y)``), ``test/neg_elbo``, ``test/recon_bce``, and for
``--per_label`` prior samples of each class: ``label_acc``, the fraction of samples whose nearest class mean (in
the features of the dataset's cached classifier, ``aelab.eval.classifier``; the class means of the training
images) is the class they were drawn for (chance: 1 / classes), and ``fd_classifier`` of the samples against the
test split (``aelab.samplers.score``). Prints the wall time and the peak resident memory of the process.
"""
import os
import resource
import time

import numpy as np

import common  # experiments/common.py, beside this file

from aelab import data, samplers
from aelab.eval import classifier


def label_accuracy(features, x_NxD: np.ndarray, y_N: np.ndarray, dataset: data.Dataset) -> float:
  """The fraction of ``x`` whose nearest training class mean in the classifier's features is ``y``."""
  train_f = features(dataset.x_train)
  means = np.stack([train_f[dataset.y_train == c].mean(0) for c in range(int(dataset.y_train.max()) + 1)])
  f = features(x_NxD)
  nearest = np.argmin(((f[:, None] - means[None]) ** 2).sum(-1), axis=1)
  return float(np.mean(nearest == y_N))


def main():
  parser = common.parser(__doc__, 'runs/cvae_labels')
  parser.add_argument('--epochs', type=int, default=None, help="train.num_epochs (default: the config's)")
  parser.add_argument('--k', type=int, default=1000, help='importance samples of test/nll')
  parser.add_argument('--per_label', type=int, default=100, help='prior samples drawn per class')
  args = parser.parse_args()
  start = time.time()
  print('| family | test/nll | test/neg_elbo | test/recon_bce | label_acc | fd_classifier | wall s |\n'
        '| --- | --- | --- | --- | --- | --- | --- |', flush=True)
  for name in ('vae', 'cvae'):
    summary, seconds = common.train_family(name, args.data, args.out, args.epochs, args.k)
    workdir = os.path.join(args.out, name)
    dataset = data.load(common.api.read_config(workdir).data)
    trained = common.aelab.load(workdir, dataset)
    num_classes = int(dataset.y_train.max()) + 1
    y = np.repeat(np.arange(num_classes), args.per_label)
    x = samplers.draw(trained, dataset, 'prior', len(y), seed=0, labels=y if trained.num_classes else None,
                      log=lambda line: None)
    grey = data.load(_grey(workdir))  # samples are grey likelihood means: scored against grey images
    net = classifier.load_or_train(grey, log=lambda line: None)
    acc = label_accuracy(net.features, x, y, grey) if trained.num_classes else float('nan')
    fd = samplers.score(x, grey, log=lambda line: None)['test/fd_classifier']
    print(f"| {name} | {summary['test/nll']:.2f} | {summary['test/neg_elbo']:.2f} | {summary['test/recon_bce']:.2f} "
          f"| {acc:.3f} | {fd:.2f} | {seconds:.0f} |", flush=True)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'wall time {time.time() - start:.0f} s, peak resident memory {peak_mb:.0f} MB', flush=True)


def _grey(workdir: str):
  """The run's data config without binarization (samples are grey likelihood means)."""
  config = common.api.read_config(workdir).data
  config.binarize = 'none'
  return config


if __name__ == '__main__':
  main()
