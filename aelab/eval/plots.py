"""Figures (matplotlib's object-oriented API on the Agg canvas, no pyplot state, so a background thread
may draw): reconstructions, denoising triplets, samples, learning curves, latent scatters, filters, feature density.

Image grids are one tiled image drawn with one ``imshow`` (not one Axes per image).
"""
from typing import Sequence

import numpy as np


def _figure(**kwargs):
  """A matplotlib ``Figure`` (imported here, not at module import: a run that draws nothing, or draws on the
  figure thread, does not pay matplotlib's import on its start-up path)."""
  from matplotlib.figure import Figure  # noqa: PLC0415
  return Figure(**kwargs)


def prepare() -> None:
  """Imports what drawing needs (matplotlib's ``Figure`` and its Agg canvas), so that a later figure does not."""
  from matplotlib.backends import backend_agg  # noqa: F401, PLC0415
  _figure()


def _as_images(x_NxD: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  """``N x H x W x C`` images in [0, 1] (``C`` is 1 for grey) from flattened rows."""
  images = np.clip(np.asarray(x_NxD, np.float32).reshape(len(x_NxD), *shape), 0.0, 1.0)
  return images if images.ndim == 4 else images.reshape(*images.shape, 1)


def tile(rows: Sequence[np.ndarray], shape: Sequence[int], gap: int = 1) -> np.ndarray:
  """One ``(R (H + gap) + gap) x (C (W + gap) + gap) [x 3]`` image of ``R`` rows of up to ``C`` images
  (each row ``N x D``), on a mid-grey background. Grey images give a 2-D array, colour images 3-D."""
  images = [_as_images(r, shape) for r in rows]
  h, w, c = images[0].shape[1:]
  num_cols = max(len(r) for r in images)
  tiled = np.full((len(rows) * (h + gap) + gap, num_cols * (w + gap) + gap, c), 0.5, np.float32)
  for i, row in enumerate(images):
    for j, image in enumerate(row):
      tiled[gap + i * (h + gap):(i + 1) * (h + gap), gap + j * (w + gap):(j + 1) * (w + gap)] = image
  return tiled[..., 0] if c == 1 else tiled


def image_rows(rows: dict[str, np.ndarray], shape: Sequence[int], path: str, title: str = '') -> None:
  """Saves a grid with one labelled row per entry of ``rows`` (each ``N x D``, values in [0, 1]): 0.9 inch
  per image, the row labels in a left margin sized to the longest (fixed margins: ``bbox_inches='tight'``
  would draw the figure twice)."""
  tiled = tile(list(rows.values()), shape)
  h = shape[0]
  labels = [k.strip() for k in rows]
  image_w, image_h = 0.9 * tiled.shape[1] / h, 0.9 * tiled.shape[0] / h  # inches
  left = 0.1 + 0.075 * max((len(label) for label in labels), default=0)
  top, bottom, right = (0.3 if title else 0.05), 0.05, 0.05
  width, height = left + image_w + right, bottom + image_h + top
  fig = _figure(figsize=(width, height))
  ax = fig.add_axes((left / width, bottom / height, image_w / width, image_h / height))
  ax.imshow(tiled, cmap='gray', vmin=0.0, vmax=1.0, interpolation='nearest', aspect='auto')
  ax.set_yticks([1 + i * (h + 1) + h / 2 for i in range(len(rows))], labels)
  ax.set_xticks([])
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  if title:
    ax.set_title(title)
  fig.savefig(path, dpi=80)


def image_grid(x_NxD: np.ndarray, shape: Sequence[int], path: str, num_cols: int = 8, title: str = '') -> None:
  """Saves ``N`` images as a grid with ``num_cols`` columns (e.g. samples from the prior)."""
  rows = {' ' * (i + 1): x_NxD[i * num_cols:(i + 1) * num_cols] for i in range(-(-len(x_NxD) // num_cols))}
  image_rows(rows, shape, path, title)


def label_rows(x_NxD: np.ndarray, labels_N: np.ndarray, shape: Sequence[int], path: str, title: str = '',
               per_row: int = 16) -> None:
  """Saves images with one row per label (a conditional model's samples), rows named ``y=<label>``: the first
  ``per_row`` images of each label."""
  labels_N = np.asarray(labels_N)
  image_rows({f'y={k}': x_NxD[labels_N == k][:per_row] for k in np.unique(labels_N)}, shape, path, title)


def learning_curves(history: list[dict], path: str) -> None:
  """Plots every ``train/*`` and ``test/*`` scalar of ``metrics.jsonl`` records against the epoch: one panel per
  metric, the epoch axis shared by the panels of a column (labelled on the bottom row), one legend."""
  names = sorted({k.split('/', 1)[1] for r in history for k in r if '/' in k})
  num_cols = min(4, len(names))
  num_rows = -(-len(names) // num_cols)
  fig = _figure(figsize=(3.2 * num_cols, 2.4 * num_rows))
  axes = fig.subplots(num_rows, num_cols, squeeze=False, sharex='col')
  for ax in axes.flat[len(names):]:
    ax.axis('off')
  lines = {}
  for i, (ax, name) in enumerate(zip(axes.flat, names)):
    for split, colour in (('train', 'C0'), ('test', 'C1')):
      points = [(r['epoch'], r[f'{split}/{name}']) for r in history if f'{split}/{name}' in r]
      if points:
        lines[split] = ax.plot(*zip(*points), colour, marker='.')[0]
    ax.set_title(name, y=1.0)  # a fixed place: matplotlib measures the tick labels to place an unset one
    ax.locator_params(nbins=4)
    if i + num_cols >= len(names):  # the lowest panel of its column
      ax.set_xlabel('epoch')
      ax.xaxis.set_tick_params(labelbottom=True)
  splits = [split for split in ('train', 'test') if split in lines]
  fig.legend([lines[split] for split in splits], splits, loc='upper center', ncols=len(splits), frameon=False)
  # Fixed margins: tight_layout took 40% of this figure's time, which a run waits for at its end.
  fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.98, bottom=0.45 / fig.get_figheight(),
                      top=1 - 0.6 / fig.get_figheight(), hspace=0.45, wspace=0.3)
  fig.savefig(path, dpi=80)


def feature_density(codes_NxZ: np.ndarray, path: str, eps: float = 1e-10) -> None:
  """The feature-density histogram (Bricken et al. 2023, "Towards Monosemanticity"; SAELens): per latent,
  ``log10`` of the fraction of the ``N`` examples on which it is nonzero (plus ``eps``, so dead latents sit
  at ``log10(eps)``, drawn as their own bar and counted in the title)."""
  frequency_Z = np.mean(np.asarray(codes_NxZ) != 0, axis=0)
  log_density = np.log10(frequency_Z + eps)
  fig = _figure(figsize=(4.8, 3.2))
  ax = fig.subplots()
  ax.hist(log_density, bins=np.linspace(np.log10(eps) - 0.25, 0.25, 42))
  ax.set_xlabel('log10 firing frequency (per latent)')
  ax.set_ylabel('latents')
  ax.set_title(f'{len(frequency_Z)} latents: {int(np.sum(frequency_Z == 0))} dead, '
               f'{int(np.sum(frequency_Z > 0.1))} firing on > 10%', fontsize=9)
  fig.subplots_adjust(left=0.14, right=0.97, bottom=0.16, top=0.9)
  fig.savefig(path, dpi=80)


def is_sparse(codes_NxZ: np.ndarray) -> bool:
  """Whether more than half of the code's entries are exactly 0 (an SAE's, a ReLU code's): such codes get
  :func:`feature_density`."""
  return codes_NxZ.size > 0 and float(np.mean(np.asarray(codes_NxZ) == 0)) > 0.5


def filters(kernel_DxH: np.ndarray, shape: Sequence[int], ax=None, num: int = 100, title: str = '') -> np.ndarray:
  """Tiles the first ``num`` columns of a first-layer kernel (``D x H``, flax's ``in x out``) as images.

  Each filter is scaled to [0, 1] on its own (min to max), as in Vincent et al. 2010, Fig. 6-8.
  Draws on ``ax`` when given and returns the tiled ``rows x cols`` image (1-pixel grey borders).
  Raises ValueError when ``D`` is not ``prod(shape)``.
  """
  kernel = np.asarray(kernel_DxH, np.float32)
  h, w = shape[0], shape[1] if len(shape) > 1 else 1
  if kernel.shape[0] != h * w:
    raise ValueError(f'A kernel with {kernel.shape[0]} inputs cannot be shown as {h} x {w} images.')
  f = kernel[:, :num].T
  f = (f - f.min(1, keepdims=True)) / np.maximum(np.ptp(f, 1, keepdims=True), 1e-12)
  cols = int(np.ceil(np.sqrt(len(f))))
  rows = -(-len(f) // cols)
  tiled = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5, np.float32)
  for i, image in enumerate(f.reshape(-1, h, w)):
    r, c = divmod(i, cols)
    tiled[1 + r * (h + 1):(r + 1) * (h + 1), 1 + c * (w + 1):(c + 1) * (w + 1)] = image
  if ax is not None:
    ax.imshow(tiled, cmap='gray', vmin=0.0, vmax=1.0)
    ax.set_title(title)
    ax.axis('off')
  return tiled


def filter_panels(kernels: dict[str, np.ndarray], shape: Sequence[int], path: str, num: int = 100) -> None:
  """Saves one panel of :func:`filters` tiles per named first-layer kernel, side by side."""
  fig = _figure(figsize=(4.2 * len(kernels), 4.4))
  axes = fig.subplots(1, len(kernels), squeeze=False)
  for ax, (name, kernel) in zip(axes[0], kernels.items()):
    filters(kernel, shape, ax, num, name)
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def project_2d(codes_NxZ: np.ndarray, method: str = 'pca', seed: int = 0) -> tuple[np.ndarray, str]:
  """Codes as 2-D points: unchanged for ``Z <= 2`` (a zero column added for ``Z = 1``), else a PCA or
  t-SNE (scikit-learn) projection. Returns ``(N x 2 points, axis label prefix)``.
  Raises ValueError for another ``method``."""
  codes = np.asarray(codes_NxZ, np.float64)
  if codes.shape[1] <= 2:
    return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1]))), 'z'
  if method == 'pca':  # numpy's SVD of the centred codes (scikit-learn's PCA costs 0.6 s to import)
    centred = codes - codes.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T, 'PC'
  if method == 'tsne':
    from sklearn.manifold import TSNE
    return TSNE(2, init='pca', random_state=seed).fit_transform(codes), 't-SNE '
  raise ValueError(f'Unknown projection {method!r}; choose pca or tsne.')


def latent_scatter(codes_NxZ: np.ndarray, labels_N: np.ndarray, path: str, method: str = 'pca',
                   prior_samples: np.ndarray | None = None, title: str = '') -> None:
  """Scatter of test codes coloured by label (2-D latents directly, else :func:`project_2d`); with
  ``prior_samples`` (``N x 2``) drawn in grey behind, to see whether the codes fill the prior."""
  points, axis = project_2d(codes_NxZ, method)
  fig = _figure(figsize=(5.5, 5))
  ax = fig.subplots()
  if prior_samples is not None and codes_NxZ.shape[1] == 2:
    ax.scatter(prior_samples[:, 0], prior_samples[:, 1], s=2, c='lightgrey', label='prior samples')
  sc = ax.scatter(points[:, 0], points[:, 1], s=3, c=labels_N, cmap='tab10', vmin=-0.5, vmax=9.5)
  fig.colorbar(sc, ax=ax, ticks=range(10), label='label')
  ax.set_xlabel(f'{axis}1')
  ax.set_ylabel(f'{axis}2')
  ax.set_title(title or f'test codes ({len(points)})')
  fig.subplots_adjust(left=0.13, right=0.98, bottom=0.1, top=0.93)  # fixed: tight_layout draws the figure twice
  fig.savefig(path, dpi=80)


def embedding_panels(panels: dict[str, np.ndarray], colour_N: np.ndarray, path: str, title: str = '',
                     discrete: bool = True, point_size: float = 3.0) -> None:
  """Saves scatter plots of ``N x 2`` (or ``N x 3``, drawn in 3-D) embeddings side by side.

  Points are coloured by ``colour_N``: class labels (``discrete``, up to 10 classes, tab10, with a colour
  bar) or a continuous value (e.g. the position along an S-curve, viridis).
  Raises ValueError when a panel does not have ``N`` rows of 2 or 3 columns.
  """
  colour = np.asarray(colour_N)
  fig = _figure(figsize=(4.2 * len(panels), 4.2))
  for i, (name, points) in enumerate(panels.items()):
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (2, 3) or len(points) != len(colour):
      raise ValueError(f'panel {name!r}: expected {len(colour)} x 2 or x 3 points, got {points.shape}.')
    ax = fig.add_subplot(1, len(panels), i + 1, **({'projection': '3d'} if points.shape[1] == 3 else {}))
    scale = ({'cmap': 'tab10', 'vmin': colour.min() - 0.5, 'vmax': colour.min() + 9.5} if discrete
             else {'cmap': 'viridis'})
    scatter = ax.scatter(*points.T, c=colour, s=point_size, linewidths=0, **scale)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  if discrete:
    fig.colorbar(scatter, ax=fig.axes, ticks=np.unique(colour), shrink=0.8, label='label')
  fig.suptitle(title, y=1.04)
  fig.savefig(path, dpi=80, bbox_inches='tight')


def reconstructions_over_epochs(inputs_NxD: np.ndarray, by_epoch: dict[int, np.ndarray], shape: Sequence[int],
                                path: str, max_rows: int = 10) -> None:
  """One figure: the inputs, then one row of reconstructions per epoch (at most ``max_rows`` epochs,
  evenly spaced, the last included)."""
  epochs = sorted(by_epoch)
  keep = sorted({epochs[int(round(i))] for i in np.linspace(0, len(epochs) - 1, min(max_rows, len(epochs)))})
  image_rows({'input': inputs_NxD, **{f'epoch {e}': by_epoch[e] for e in keep}}, shape, path,
             'reconstructions over epochs')
