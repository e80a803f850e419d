"""A trained sparse autoencoder as files other tools read, and back::

  python -m aelab.export --workdir=runs/sae --format=saelens --out=runs/sae_saelens
  python -m aelab.export --import_saelens=runs/sae_saelens --workdir=runs/sae_imported [--data=activations=DIR]

``--format=saelens`` writes SAELens's on-disk format (what ``sae_lens.SAE.load_from_disk(OUT)`` reads;
SAELens 6, ``sae_lens/saes/sae.py``): ``cfg.json`` (``architecture``, ``d_in``, ``d_sae``, ``dtype``,
``device``, ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, ``metadata``, and
``k`` for ``topk``) and ``sae_weights.safetensors`` with ``W_enc`` (``d_in x d_sae``), ``b_enc``
(``d_sae``), ``W_dec`` (``d_sae x d_in``), ``b_dec`` (``d_in``) and, for ``jumprelu``, ``threshold``
(``d_sae``), all float32. aelab's activations map to SAELens's architectures: ``relu`` to ``standard``,
``topk`` to ``topk``, ``jumprelu`` (``exp(log_threshold)``) and ``batchtopk`` (its evaluation threshold,
one value for every latent) to ``jumprelu``, and ``gated`` to ``gated`` (``sae_lens/saes/gated_sae.py``):
there the gate's bias is ``b_gate`` (aelab's ``b_enc``; no ``b_enc`` is written) and ``b_mag``, ``r_mag``
keep their names, as both compute ``z = H((x - b_dec) W_enc + b_gate) * ReLU((x - b_dec) (W_enc *
exp(r_mag)) + b_mag)`` (Rajamanoharan et al. 2024a, Eq. 6-7). A run trained on activations scaled by ``s``
(``data.activations.normalize``) has the scale folded into the weights as SAELens's
``fold_activation_norm_scaling_factor`` does: ``W_enc * s``, ``W_dec / s``, ``b_dec / s``, so the exported
SAE takes the activations as they are stored.

``--import_saelens=FOLDER`` makes an aelab run of such a folder (``standard``, ``topk``, ``jumprelu``,
``gated``; ``apply_b_dec_to_input=False`` is folded into ``b_enc``, and a gated ``b_mag``; only
``normalize_activations='none'``) in ``--workdir``: its config.json and a checkpoint of epoch 1, which
``aelab.load`` and ``python -m aelab.evaluate`` read. ``--data`` names the data to evaluate on (a config arg,
``activations=DIR``); without it, ``superposition`` data of dimension ``d_in`` stands in.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from aelab import api, cli, config as config_lib
from aelab.data.sources import activations
from aelab.errors import ConfigError, DataError
from aelab.train import checkpoints, engine
from aelab.train.workdir import Workdir

CFG_FILENAME, WEIGHTS_FILENAME = 'cfg.json', 'sae_weights.safetensors'
ARCHITECTURES = {'relu': 'standard', 'topk': 'topk', 'jumprelu': 'jumprelu', 'batchtopk': 'jumprelu', 'gated': 'gated'}
ACTIVATIONS = {'standard': 'relu', 'topk': 'topk', 'jumprelu': 'jumprelu', 'gated': 'gated'}
# aelab's Gated SAE parameters by SAELens's names (sae_lens/saes/gated_sae.py, GatedSAE: b_gate, b_mag, r_mag; no
# b_enc): the gate's bias is aelab's b_enc, the magnitude path's W_enc * exp(r_mag) + b_mag is the same in both
GATED_NAMES = {'b_enc': 'b_gate', 'b_mag': 'b_mag', 'r_mag': 'r_mag'}
TINY_THRESHOLD = 1e-30  # an imported threshold of 0 (log_threshold must be finite)


def run_scale(workdir: str, config: Any) -> float:
  """The factor the run's activations were multiplied by: summary.json's ``data/activation_scale``, else
  :func:`aelab.data.sources.activations.activation_scale` of its data (1 for other sources)."""
  summary = Workdir(workdir, config).read_summary() or {}
  if 'data/activation_scale' in summary:
    return float(summary['data/activation_scale'])
  return activations.activation_scale(config.data) if config.data.name == 'activations' else 1.0


def saelens_weights(params: dict, config: Any, scale: float = 1.0) -> tuple[dict, dict[str, np.ndarray]]:
  """``(cfg.json dict, {name: float32 array})`` of an aelab SAE's ``params`` (model.name=sae), the
  activation scale ``s`` folded in (``W_enc * s``, ``W_dec / s``, ``b_dec / s``). Raises ConfigError for
  another family."""
  if config.model.name != 'sae':
    raise ConfigError(f'model.name={config.model.name!r}: --format=saelens exports sparse autoencoders '
                      '(model.name=sae) only.')
  p = {k: np.asarray(v, np.float32) for k, v in params.items()}
  activation, (d_in, d_sae) = config.sae.activation, p['W_enc'].shape
  weights = {'W_enc': p['W_enc'] * np.float32(scale), 'b_enc': p['b_enc'], 'W_dec': p['W_dec'] / np.float32(scale),
             'b_dec': p['b_dec'] / np.float32(scale)}
  if activation == 'jumprelu':
    weights['threshold'] = np.exp(p['log_threshold'])
  if activation == 'batchtopk':
    weights['threshold'] = np.full(d_sae, p['threshold'], np.float32)
  if activation == 'gated':  # the biases act after W_enc: the scale folded into W_enc leaves them as they are
    weights.update({GATED_NAMES[k]: p[k] for k in GATED_NAMES})
    del weights['b_enc']
  cfg = {'architecture': ARCHITECTURES[activation], 'd_in': int(d_in), 'd_sae': int(d_sae), 'dtype': 'float32',
         'device': 'cpu', 'apply_b_dec_to_input': True, 'normalize_activations': 'none',
         'reshape_activations': 'none', 'metadata': {'model_name': 'aelab', 'hook_name': None}}
  if activation == 'topk':
    cfg['k'] = int(config.sae.k)
  return cfg, {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}


def export_saelens(workdir: str, out: str) -> pathlib.Path:
  """Writes the run in ``workdir`` (its latest checkpoint) to the folder ``out`` in SAELens's format (see
  the module docstring). Returns the folder. Raises ConfigError for a run of another family,
  FileNotFoundError without a checkpoint."""
  trained = api.load(workdir)
  cfg, weights = saelens_weights(jax.device_get(trained.params), trained.config, run_scale(workdir, trained.config))
  folder = pathlib.Path(out)
  folder.mkdir(parents=True, exist_ok=True)
  save_file(weights, str(folder / WEIGHTS_FILENAME))
  (folder / CFG_FILENAME).write_text(json.dumps(cfg, indent=2) + '\n')
  return folder


def read_saelens(folder: str) -> tuple[dict, dict[str, np.ndarray]]:
  """``(cfg, weights as float32)`` of a SAELens folder. Raises DataError for a missing or damaged file."""
  path = pathlib.Path(folder)
  try:
    cfg = json.loads((path / CFG_FILENAME).read_text())
    weights = {k: np.asarray(v, np.float32) for k, v in load_file(str(path / WEIGHTS_FILENAME)).items()}
  except (OSError, ValueError) as e:
    raise DataError(f'{folder}: not a SAELens SAE folder ({CFG_FILENAME} and {WEIGHTS_FILENAME}): {e}') from e
  needed = saelens_names(cfg)
  missing = [k for k in needed if k not in weights]
  if missing:
    raise DataError(f'{path / WEIGHTS_FILENAME} lacks {missing}; a SAELens {cfg.get("architecture")!r} SAE has '
                    f'{", ".join(needed)}.')
  return cfg, weights


def saelens_names(cfg: dict) -> tuple[str, ...]:
  """The weights every SAELens SAE of ``cfg['architecture']`` has (gated: b_gate, b_mag, r_mag for b_enc)."""
  if cfg.get('architecture') == 'gated':
    return 'W_enc', 'b_gate', 'b_mag', 'r_mag', 'W_dec', 'b_dec'
  return 'W_enc', 'b_enc', 'W_dec', 'b_dec'


def aelab_params(cfg: dict, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """An aelab SAE's params from SAELens ``cfg`` and ``weights``: ``apply_b_dec_to_input=False`` folded into
  ``b_enc`` (``b_enc + b_dec W_enc``; gated: ``b_gate + b_dec W_enc`` and ``b_mag + b_dec (W_enc *
  exp(r_mag))``), a JumpReLU ``threshold`` as ``log_threshold``. Raises ConfigError for
  an architecture or normalization aelab does not have."""
  if cfg.get('architecture') not in ACTIVATIONS:
    raise ConfigError(f'SAELens architecture {cfg.get("architecture")!r}: aelab imports {sorted(ACTIVATIONS)}.')
  if cfg.get('normalize_activations', 'none') != 'none':
    raise ConfigError(f'normalize_activations={cfg["normalize_activations"]!r}: aelab imports SAEs that take the '
                      "activations as they are ('none'); fold the scaling into the weights first "
                      '(SAELens: sae.fold_activation_norm_scaling_factor).')
  params = {k: weights[k] for k in ('W_enc', 'W_dec', 'b_dec')}
  if cfg['architecture'] == 'gated':
    params.update({k: weights[name] for k, name in GATED_NAMES.items()})
  else:
    params['b_enc'] = weights['b_enc']
  if not cfg.get('apply_b_dec_to_input', True):  # x W + b = (x - b_dec) W + (b + b_dec W)
    params['b_enc'] = params['b_enc'] + params['b_dec'] @ params['W_enc']
    if cfg['architecture'] == 'gated':  # the magnitude path's W_mag = W_enc * exp(r_mag)
      params['b_mag'] = params['b_mag'] + params['b_dec'] @ (params['W_enc'] * np.exp(params['r_mag'])[None])
  if cfg['architecture'] == 'jumprelu':
    params['log_threshold'] = np.log(np.maximum(weights['threshold'], TINY_THRESHOLD)).astype(np.float32)
  return params


def import_config(cfg: dict, data_arg: str | None) -> Any:
  """The aelab config of a SAELens SAE: ``model.name=sae`` with its width and activation, one epoch, data
  from the config arg ``data_arg`` (``activations=DIR``), else superposition data of dimension ``d_in``."""
  config = config_lib.base('sae')
  if data_arg:
    config = config_lib.set_data(config, data_arg)
  else:
    config.data.name = 'superposition'
    config.data.superposition.update(dim=cfg['d_in'], num_features=2 * cfg['d_in'], num_train=256, num_test=256)
  config = config_lib.adapt_to_data(config)
  config.model.update(latent_dim=int(cfg['d_sae']), likelihood='mse', output_activation='identity')
  config.sae.update(activation=ACTIVATIONS[cfg['architecture']], unit_norm_decoder=False,
                    aux_k=min(config.sae.aux_k, int(cfg['d_sae'])))
  if cfg['architecture'] == 'topk':
    config.sae.k = int(cfg['k'])
  config.train.num_epochs = 1
  config_lib.validate(config)
  return config


def import_saelens(folder: str, workdir: str, data_arg: str | None = None) -> Workdir:
  """Writes the SAELens SAE in ``folder`` as an aelab run in ``workdir`` (config.json, the checkpoint of
  epoch 1). Raises ConfigError / DataError as :func:`read_saelens`, :func:`aelab_params` and
  :func:`import_config`, and ConfigError when the weights' shapes disagree with ``d_in`` / ``d_sae``."""
  cfg, weights = read_saelens(folder)
  params = aelab_params(cfg, weights)
  config = import_config(cfg, data_arg)
  run = engine.make_run(config, (cfg['d_in'],))
  init_state, _ = engine.make_train_step(run, 1)
  state = jax.device_get(init_state(run.init_key, jnp.zeros((1, cfg['d_in']), jnp.float32)))
  expected = {k: np.shape(v) for k, v in state['params'].items()}
  if {k: v.shape for k, v in params.items()} != expected:
    raise ConfigError(f'{folder}: weights of shapes { {k: v.shape for k, v in params.items()} }, but d_in='
                      f'{cfg["d_in"]} and d_sae={cfg["d_sae"]} give {expected}.')
  state['params'] = params
  out = Workdir(workdir, config)
  out.write_config()
  ckpt = checkpoints.GroupCheckpoints(os.path.join(out.path, 'checkpoints'))
  ckpt.save(1, engine.stack([state]))
  ckpt.close()
  checkpoints.write_pointer(out.path, ckpt.directory, 0, 1)
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog='python -m aelab.export', description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='the run to export, or (with --import_saelens) the new run')
  parser.add_argument('--format', choices=('saelens',), default='saelens', help='the format to write')
  parser.add_argument('--out', help='the folder to write (--format=saelens)')
  parser.add_argument('--import_saelens', '--import-saelens', dest='import_saelens',
                      help='a SAELens SAE folder (cfg.json, sae_weights.safetensors) to import into --workdir')
  parser.add_argument('--data', help='with --import_saelens: the data to evaluate on, e.g. activations=DIR')
  parser.add_argument('--debug', action='store_true', help='show the traceback of an error instead of one line')
  args = parser.parse_args(argv)
  if not args.import_saelens and not args.out:
    parser.error('give --out=FOLDER (export) or --import_saelens=FOLDER (import).')
  with cli.reporting(args.debug, exiting=__name__ == '__main__'):
    if args.import_saelens:
      out = import_saelens(args.import_saelens, args.workdir, args.data)
      print(f'{out.path}: an aelab run of {args.import_saelens} (python -m aelab.evaluate --workdir={out.path})')
    else:
      folder = export_saelens(args.workdir, args.out)
      print(f'{folder}: {CFG_FILENAME}, {WEIGHTS_FILENAME} (sae_lens.SAE.load_from_disk("{folder}"))')


if __name__ == '__main__':
  main()
