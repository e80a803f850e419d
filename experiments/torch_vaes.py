"""Eight VAEs trained one after another in plain PyTorch: the baseline of ``bench.py --whole_process``.

  python experiments/torch_vaes.py                       # 8 VAEs x 3 epochs on ../shared/data/mnist
  python experiments/torch_vaes.py --models=2 --epochs=1

A researcher's own script, standalone on purpose: it imports neither aelab nor jax, so timing it as a
whole process measures a bare PyTorch process. Each model is the VAE of ``configs/vae.py``: MLP 784-400-20
(encoder Linear(784, 400) + ReLU, Linear(400, 40) giving mean and log-variance; decoder Linear(20, 400) +
ReLU, Linear(400, 784) logits), Bernoulli likelihood, closed-form Gaussian KL times ``kl_weight``, Adam
(lr 1e-3), batch 128, dynamic binarization (a fresh Bernoulli sample of the [0, 1] pixels each step), a
fresh permutation each epoch with the remainder dropped. After each epoch it prints the test negative
ELBO (KL weight 1, one posterior sample, nats per example). Model i has ``kl_weight = KL_WEIGHTS[i]``
(those of ``configs/sweeps/kl_weight.py``) and seed 0 (``torch.manual_seed(0)`` before it is built).

Data: the MNIST test set in IDX format (``t10k-images-idx3-ubyte.gz``), scaled to [0, 1] and split by a
fixed numpy permutation (seed 0) into 8,000 training and 2,000 test images; the test images are binarized
once with a fixed-seed Bernoulli sample. (aelab splits with a jax permutation, so the two splits hold
different images; the sizes, and so the work, are the same.)

At the end it prints the wall time since the script began (``time`` is imported first, before numpy and
torch; only the interpreter's own start-up precedes it) and one JSON line: ``models``, ``epochs``,
``train_examples`` (size of the training split), ``model_examples`` (examples trained on by all models:
models x epochs x the full batches of an epoch, 62 x 128 = 7,936 for 8,000) and ``wall_s``.
Uses torch's default number of threads, on ``--device`` (CUDA where torch sees a GPU, else the CPU).
"""
import time

_START = time.perf_counter()

# pylint: disable=wrong-import-position
import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

KL_WEIGHTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mnist'
IMAGES, LABELS = 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'
NUM_TRAIN = 8000
D, HIDDEN, LATENT = 784, 400, 20


def read_idx(path: pathlib.Path, magic: int, header: int) -> np.ndarray:
  """The uint8 payload of a gzip-compressed IDX file, after checking its magic number."""
  with gzip.open(path, 'rb') as f:
    raw = f.read()
  found = int.from_bytes(raw[:4], 'big')
  if found != magic:
    raise SystemExit(f'error: {path} has IDX magic {found}, expected {magic}.')
  return np.frombuffer(raw, np.uint8, offset=header)


def load_mnist(directory: pathlib.Path) -> tuple[torch.Tensor, torch.Tensor]:
  """``(x_train [8000, 784] in [0, 1], x_test [2000, 784] binarized once)`` from the MNIST test set."""
  images_path = directory / IMAGES
  if not images_path.is_file():
    raise SystemExit(f'error: no MNIST at {images_path} (give the folder of {IMAGES} with --data DIR).')
  images = read_idx(images_path, 2051, 16).reshape(-1, D).astype(np.float32) / 255.0
  if (directory / LABELS).is_file():  # labels are not used, only checked to belong to the images
    labels = read_idx(directory / LABELS, 2049, 8)
    if len(labels) != len(images):
      raise SystemExit(f'error: {len(images)} images but {len(labels)} labels in {directory}.')
  perm = np.random.default_rng(0).permutation(len(images))
  x_train, x_test = images[perm[:NUM_TRAIN]], images[perm[NUM_TRAIN:]]
  x_test = (np.random.default_rng(1).random(x_test.shape, np.float32) < x_test).astype(np.float32)
  return torch.from_numpy(x_train), torch.from_numpy(x_test)


class VAE(torch.nn.Module):
  """MLP VAE 784-400-20 with a Bernoulli decoder (logits)."""

  def __init__(self):
    super().__init__()
    self.enc1, self.enc2 = torch.nn.Linear(D, HIDDEN), torch.nn.Linear(HIDDEN, 2 * LATENT)
    self.dec1, self.dec2 = torch.nn.Linear(LATENT, HIDDEN), torch.nn.Linear(HIDDEN, D)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example ``(reconstruction NLL, KL)`` with one reparameterized posterior sample."""
    mean, log_var = self.enc2(torch.relu(self.enc1(x))).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    logits = self.dec2(torch.relu(self.dec1(z)))
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum(-1)
    kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(-1)
    return recon, kl


def train_epoch(model: VAE, opt: torch.optim.Optimizer, x_train: torch.Tensor, batch_size: int,
                kl_weight: float) -> None:
  """One pass over a fresh permutation (remainder dropped), binarizing each batch afresh."""
  perm = torch.randperm(len(x_train), device=x_train.device)
  for i in range(len(x_train) // batch_size):
    x = torch.bernoulli(x_train[perm[i * batch_size:(i + 1) * batch_size]])
    recon, kl = model(x)
    loss = (recon + kl_weight * kl).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def test_neg_elbo(model: VAE, x_test: torch.Tensor, batch_size: int = 1000) -> float:
  """Mean negative ELBO (KL weight 1, one posterior sample) over the test images, nats per example."""
  total = 0.0
  for x in x_test.split(batch_size):
    recon, kl = model(x)
    total += float((recon + kl).sum())  # also waits for the device
  return total / len(x_test)


def train_model(index: int, kl_weight: float, data: tuple[torch.Tensor, torch.Tensor], epochs: int,
                batch_size: int) -> None:
  """Trains one VAE from seed 0, printing the test negative ELBO after each epoch."""
  x_train, x_test = data
  torch.manual_seed(0)
  model = VAE().to(x_train.device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  for epoch in range(1, epochs + 1):
    model.train()
    train_epoch(model, opt, x_train, batch_size, kl_weight)
    model.eval()
    print(f'model {index} kl_weight={kl_weight:g} epoch {epoch}: test/neg_elbo={test_neg_elbo(model, x_test):.3f} '
          f'({time.perf_counter() - _START:.1f} s)', flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', type=pathlib.Path, default=DEFAULT_DATA,
                      help=f'folder of {IMAGES} (default: {DEFAULT_DATA})')
  parser.add_argument('--models', type=int, default=len(KL_WEIGHTS), choices=range(1, len(KL_WEIGHTS) + 1),
                      metavar=f'1..{len(KL_WEIGHTS)}', help='train the first N KL weights (default all 8)')
  parser.add_argument('--epochs', type=int, default=3, help='epochs per model (default 3)')
  parser.add_argument('--batch_size', type=int, default=128, help='training batch size (default 128)')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                      help="torch device (default 'cuda' where available, else 'cpu')")
  args = parser.parse_args()
  if not args.data.is_dir():
    raise SystemExit(f'error: MNIST folder {args.data} not found (give the folder of {IMAGES} with --data DIR).')
  data = tuple(x.to(args.device) for x in load_mnist(args.data))
  for index, kl_weight in enumerate(KL_WEIGHTS[:args.models]):
    train_model(index, kl_weight, data, args.epochs, args.batch_size)
  wall = time.perf_counter() - _START
  train_examples = len(data[0])
  model_examples = args.models * args.epochs * (train_examples // args.batch_size * args.batch_size)
  print(f'Done: {args.models} VAEs x {args.epochs} epochs in {wall:.1f} s since the script began '
        f'({model_examples / wall:,.0f} model-examples/s, torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads).')
  print(json.dumps({'models': args.models, 'epochs': args.epochs, 'train_examples': train_examples,
                    'model_examples': model_examples, 'wall_s': wall, 'device': args.device}))


if __name__ == '__main__':
  main()
