"""data.name=activations (shards of tokens x d_in) and the SAELens export / import (aelab/export.py)."""
import json
import os
import subprocess
import sys

import ml_collections
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

import aelab
from aelab import cli, config as config_lib, data, evaluate, export
from aelab.data import stream
from aelab.data.sources import activations
from aelab.train import engine, sweep
from conftest import CACHE_DIR, ROOT

D_IN = 6


def tokens(n: int, seed: int = 0) -> np.ndarray:
  return (np.random.default_rng(seed).normal(size=(n, D_IN)) * 3 + 1).astype(np.float32)


def folder(tmp_path, x: np.ndarray, dtype=np.float32, cuts=(40, 90)):
  """x in three shards: .npy, .safetensors, .npy (rows [0, 40), [40, 90), [90, N))."""
  tmp_path.mkdir(exist_ok=True)
  parts = np.split(x.astype(dtype), cuts)
  np.save(tmp_path / 'a.npy', parts[0])
  save_file({'activations': parts[1]}, str(tmp_path / 'b.safetensors'))
  np.save(tmp_path / 'c.npy', parts[2])
  return tmp_path


def data_config(path, **section) -> ml_collections.ConfigDict:
  fields = {**{k: d for k, (d, _) in activations.CONFIG.items()}, **section}
  return ml_collections.ConfigDict({'name': 'activations', 'path': str(path), 'split_seed': 0, 'stream': False,
                                    'activations': fields})


@pytest.mark.parametrize('dtype', [np.float32, np.float16, ml_dtypes.bfloat16])
def test_shards_read_as_one_table_in_every_dtype(tmp_path, dtype):
  x = tokens(120)
  shards = activations.Shards(folder(tmp_path, x, dtype))
  rows = np.array([119, 0, 45, 39, 40, 90, 89])
  assert len(shards) == 120 and shards.dim == D_IN
  np.testing.assert_array_equal(shards.read(rows)[0], x.astype(dtype).astype(np.float32)[rows])


def test_streamed_and_in_memory_hold_out_the_same_tokens_and_normalize_to_d_in(tmp_path):
  x = tokens(200)
  config = data_config(folder(tmp_path, x), test_fraction=0.1, normalize=True, scale_tokens=10_000)
  scale = np.sqrt(D_IN / np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))
  assert activations.activation_scale(config) == pytest.approx(scale, rel=1e-6)
  memory = data.load(config)
  config.stream = True
  streamed = stream.load(config)
  assert isinstance(streamed.train, stream.Stream) and memory.train.shape == (180, D_IN)
  np.testing.assert_array_equal(memory.test, streamed.test)
  np.testing.assert_allclose(streamed.train.read(np.arange(180)), memory.train, rtol=1e-6)
  everything = np.concatenate([memory.train, memory.test])
  assert np.mean(np.sum(everything.astype(np.float64) ** 2, axis=1)) == pytest.approx(D_IN, rel=1e-5)
  assert sorted(map(tuple, everything)) == sorted(map(tuple, (x * np.float32(scale))))


def test_a_streamed_epoch_shuffles_across_shards_with_its_seed(tmp_path):
  x = np.repeat(np.arange(300, dtype=np.float32)[:, None], D_IN, axis=1)
  config = data_config(folder(tmp_path, x, cuts=(100, 200)), test_fraction=0.1)
  config.stream = True
  train = stream.load(config).train
  first = np.concatenate(list(stream.epoch_batches(train, 30, seed=0, epoch=1)))[:, 0]
  again = np.concatenate(list(stream.epoch_batches(train, 30, seed=0, epoch=1)))[:, 0]
  other = np.concatenate(list(stream.epoch_batches(train, 30, seed=0, epoch=2)))[:, 0]
  np.testing.assert_array_equal(first, again)
  assert sorted(first) == sorted(x[train.indices, 0]) and not np.array_equal(first, other)
  assert len(set((first[:30] // 100).astype(int))) == 3  # one batch holds tokens of every shard


def _error_line(config) -> str:
  with pytest.raises(SystemExit) as info:
    with cli.reporting(debug=False):
      stream.load(config)
  return str(info.value.code)


def test_a_shard_of_another_width_dtype_or_damaged_is_one_error_line_naming_it(tmp_path):
  path = folder(tmp_path, tokens(120))
  np.save(path / 'd.npy', tokens(5)[:, :4])
  assert _error_line(data_config(path)) == (f'error: activation shard {path / "d.npy"}: d_in=4, but a.npy has '
                                            f'd_in={D_IN}; every shard of the folder must have the same width.')
  np.save(path / 'd.npy', tokens(5).astype(np.float16))
  assert _error_line(data_config(path)).startswith(f'error: activation shard {path / "d.npy"}: dtype float16, but')
  (path / 'd.npy').unlink()
  raw = (path / 'b.safetensors').read_bytes()
  (path / 'b.safetensors').write_bytes(raw[:-7])
  line = _error_line(data_config(path))
  assert line.startswith(f'error: activation shard {path / "b.safetensors"}') and 'truncated' in line, line
  (path / 'b.safetensors').write_bytes(b'not a tensor file')
  assert _error_line(data_config(path)).startswith(f'error: activation shard {path / "b.safetensors"}')


def test_main_names_a_damaged_shard_in_one_line(tmp_path):
  path = folder(tmp_path / 'acts', tokens(120))
  (path / 'c.npy').write_bytes((path / 'c.npy').read_bytes()[:-10])
  command = [sys.executable, '-m', 'aelab.main', f'--config=configs/sae_topk.py:activations={path}',
             f'--workdir={tmp_path / "w"}', '--config.train.num_epochs=1', '--config.train.figures_every=0',
             f'--config.train.compilation_cache_dir={CACHE_DIR}']
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'PYTHONPATH': str(ROOT)})
  assert done.returncode == 1 and done.stderr.count('\n') == 1, done.stderr
  assert done.stderr.startswith(f'error: activation shard {path / "c.npy"}: ') and 'truncated' in done.stderr


# ---- SAELens export and import ----

def sae_config(path, activation: str) -> ml_collections.ConfigDict:
  config = config_lib.adapt_to_data(config_lib.set_data(config_lib.base('sae'), f'activations={path}'))
  config.data.activations.update(normalize=True, test_fraction=0.2)
  config.model.latent_dim = 16
  config.sae.update(activation=activation, k=3, aux_k=8, l1_weight=0.01, l0_weight=0.01, threshold_init=0.05)
  config.train.update(num_epochs=2, batch_size=32, figures_every=0, compilation_cache_dir=str(CACHE_DIR))
  config.eval.final_metrics = True
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Three tiny SAEs (topk, jumprelu, relu) trained on normalized activations: {activation: workdir}."""
  root = tmp_path_factory.mktemp('sae')
  path = folder(root / 'acts', tokens(400))
  runs = {}
  for activation in ('topk', 'jumprelu', 'relu'):
    runs[activation] = str(root / activation)
    engine.train_and_evaluate(sae_config(path, activation), runs[activation], log=lambda line: None)
  return path, runs


@pytest.mark.parametrize('activation', ['topk', 'jumprelu', 'relu'])
def test_export_then_import_gives_the_same_latents_and_reconstructions(trained, tmp_path, activation):
  path, runs = trained
  run = aelab.load(runs[activation])
  export.main([f'--workdir={runs[activation]}', '--format=saelens', f'--out={tmp_path / "out"}'])
  cfg = json.loads((tmp_path / 'out' / 'cfg.json').read_text())
  assert cfg['architecture'] == export.ARCHITECTURES[activation] and (cfg['d_in'], cfg['d_sae']) == (D_IN, 16)
  export.main([f'--import_saelens={tmp_path / "out"}', f'--workdir={tmp_path / "new"}', f'--data=activations={path}'])
  imported = aelab.load(str(tmp_path / 'new'))
  scale = json.loads(open(f'{runs[activation]}/summary.json').read())['data/activation_scale']
  raw = tokens(400)[:50]
  z, z_new = run.encode(raw * np.float32(scale)), imported.encode(raw)
  assert (z > 0).sum(1).mean() > 0.5 and np.array_equal(z > 0, z_new > 0)
  np.testing.assert_allclose(z_new, z, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(imported.reconstruct(raw), run.reconstruct(raw * np.float32(scale)) / scale,
                             rtol=1e-4, atol=1e-5)


def test_the_saelens_weights_fold_the_scale(trained):
  _, runs = trained
  run = aelab.load(runs['topk'])
  cfg, w = export.saelens_weights(run.params, run.config, scale=2.0)
  assert cfg['k'] == 3 and sorted(w) == ['W_dec', 'W_enc', 'b_dec', 'b_enc']
  np.testing.assert_allclose(w['W_enc'], 2 * np.asarray(run.params['W_enc']))
  np.testing.assert_allclose(w['b_dec'], np.asarray(run.params['b_dec']) / 2)


def test_an_imported_bias_not_applied_to_the_input_is_folded_into_b_enc():
  rng = np.random.default_rng(0)
  w = {'W_enc': rng.normal(size=(4, 8)), 'b_enc': rng.normal(size=8), 'W_dec': rng.normal(size=(8, 4)),
       'b_dec': rng.normal(size=4)}
  params = export.aelab_params({'architecture': 'standard', 'apply_b_dec_to_input': False}, w)
  x = rng.normal(size=(5, 4))
  np.testing.assert_allclose((x - params['b_dec']) @ params['W_enc'] + params['b_enc'], x @ w['W_enc'] + w['b_enc'])
  with pytest.raises(config_lib.ConfigError, match='normalize_activations'):
    export.aelab_params({'architecture': 'standard', 'normalize_activations': 'layer_norm'}, w)


@pytest.mark.parametrize('activation', ['topk', 'jumprelu', 'relu'])
def test_sae_lens_loads_the_export_and_encodes_and_decodes_the_same(trained, tmp_path, activation):
  sae_lens = pytest.importorskip('sae_lens')
  torch = pytest.importorskip('torch')
  _, runs = trained
  run = aelab.load(runs[activation])
  export.export_saelens(runs[activation], str(tmp_path / 'out'))
  sae = sae_lens.SAE.load_from_disk(str(tmp_path / 'out'), device='cpu')
  scale = json.loads(open(f'{runs[activation]}/summary.json').read())['data/activation_scale']
  raw = tokens(400)[:50]
  with torch.no_grad():
    z = sae.encode(torch.from_numpy(raw)).numpy()
    x_hat = sae.decode(sae.encode(torch.from_numpy(raw))).numpy()
  np.testing.assert_allclose(z, run.encode(raw * np.float32(scale)), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(x_hat, run.reconstruct(raw * np.float32(scale)) / scale, rtol=1e-4, atol=1e-5)


def gated_folder(path, apply_b_dec_to_input: bool = True):
  """A SAELens Gated SAE folder (d_in 6, d_sae 16) of random weights, named as sae_lens/saes/gated_sae.py's."""
  rng = np.random.default_rng(1)
  w = {'W_enc': rng.normal(size=(D_IN, 16)) / 3, 'b_gate': rng.normal(size=16), 'b_mag': rng.normal(size=16),
       'r_mag': rng.normal(size=16) * 0.3, 'W_dec': rng.normal(size=(16, D_IN)) / 3, 'b_dec': rng.normal(size=D_IN)}
  w = {k: v.astype(np.float32) for k, v in w.items()}
  path.mkdir()
  save_file(w, str(path / 'sae_weights.safetensors'))
  (path / 'cfg.json').write_text(json.dumps({'architecture': 'gated', 'd_in': D_IN, 'd_sae': 16, 'dtype': 'float32',
                                             'apply_b_dec_to_input': apply_b_dec_to_input}))
  return w


def saelens_gated(w: dict, x: np.ndarray, apply_b_dec_to_input: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """(z, x_hat) as SAELens's GatedSAE.encode / decode compute them, in numpy."""
  x_in = x - w['b_dec'] if apply_b_dec_to_input else x
  gate = (x_in @ w['W_enc'] + w['b_gate']) > 0
  z = gate * np.maximum(x_in @ (w['W_enc'] * np.exp(w['r_mag'])) + w['b_mag'], 0)
  return z, z @ w['W_dec'] + w['b_dec']


@pytest.mark.parametrize('apply_b_dec_to_input', [True, False])
def test_a_gated_sae_maps_to_saelens_b_gate_b_mag_r_mag_both_ways(tmp_path, apply_b_dec_to_input):
  w = gated_folder(tmp_path / 'in', apply_b_dec_to_input)
  export.import_saelens(str(tmp_path / 'in'), str(tmp_path / 'run'))
  run, x = aelab.load(str(tmp_path / 'run')), tokens(50)
  z, x_hat = saelens_gated(w, x, apply_b_dec_to_input)
  assert 0 < (z > 0).mean() < 1 and run.config.sae.activation == 'gated'
  np.testing.assert_allclose(run.encode(x), z, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(run.reconstruct(x), x_hat, rtol=1e-5, atol=1e-5)
  cfg, out = export.saelens_weights(run.params, run.config, scale=2.0)  # a run on activations scaled by 2
  assert cfg['architecture'] == 'gated' and sorted(out) == ['W_dec', 'W_enc', 'b_dec', 'b_gate', 'b_mag', 'r_mag']
  z2, x_hat2 = saelens_gated(out, x)
  np.testing.assert_allclose(z2, run.encode(2 * x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(x_hat2, run.reconstruct(2 * x) / 2, rtol=1e-5, atol=1e-5)
  if apply_b_dec_to_input:  # the round trip gives back the weights as they were
    assert all(np.array_equal(export.saelens_weights(run.params, run.config)[1][k], w[k]) for k in w)


def test_sae_lens_loads_an_exported_gated_sae_and_encodes_and_decodes_the_same(tmp_path):
  sae_lens = pytest.importorskip('sae_lens')
  torch = pytest.importorskip('torch')
  gated_folder(tmp_path / 'in', apply_b_dec_to_input=False)
  export.import_saelens(str(tmp_path / 'in'), str(tmp_path / 'run'))
  export.export_saelens(str(tmp_path / 'run'), str(tmp_path / 'out'))
  run, x = aelab.load(str(tmp_path / 'run')), tokens(50)
  sae = sae_lens.SAE.load_from_disk(str(tmp_path / 'out'), device='cpu')
  assert type(sae).__name__ == 'GatedSAE'
  with torch.no_grad():
    z = sae.encode(torch.from_numpy(x))
    x_hat = sae.decode(z).numpy()
  np.testing.assert_allclose(z.numpy(), run.encode(x), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(x_hat, run.reconstruct(x), rtol=1e-4, atol=1e-5)


# ---- many SAEs on one stream ----

def test_shared_batches_hand_every_reader_every_chunk_read_once():
  reads, shared = [], stream.SharedBatches(3, ahead=2)

  class Counting:
    def __init__(self, epoch):
      self.items = iter(range(10 * epoch, 10 * epoch + 7))

    def __iter__(self):
      return self

    def __next__(self):
      reads.append(item := next(self.items))
      return item

    def get_state(self):
      return {'done': True}

  got, errors = {}, []

  def reader(name, epochs):
    slot = shared.slot()
    try:
      for epoch in epochs:
        batches = slot.batches(epoch, lambda epoch=epoch: Counting(epoch))
        got[name, epoch] = list(batches)
        assert batches.get_state() == {'done': True}
    except Exception as e:  # noqa: BLE001
      errors.append(e)
    slot.leave()

  import threading
  threads = [threading.Thread(target=reader, args=(n, (1, 2))) for n in 'ab'] + [
      threading.Thread(target=reader, args=('c', (1,)))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=30)
  assert not any(t.is_alive() for t in threads) and errors == []
  assert sorted(reads) == [*range(10, 17), *range(20, 27)]  # each chunk read once
  assert got['a', 1] == got['b', 1] == got['c', 1] == list(range(10, 17)) and got['a', 2] == list(range(20, 27))
  assert shared.epochs == {}


def test_a_sweep_over_widths_reads_each_chunk_once_and_trains_as_groups_one_after_another(tmp_path, monkeypatch):
  path = folder(tmp_path / 'acts', tokens(400))
  config = sae_config(path, 'topk')
  config.data.update(stream=True, stream_chunk=2)
  config.eval.final_metrics = False
  runs = sweep.product(sweep.axis('model.latent_dim', [8, 16]), sweep.axis('seed', [0, 1]))
  counted = {'rows': 0}
  read = activations.Shards.read

  def counting(self, rows_R=None):
    x = read(self, rows_R)
    counted['rows'] += len(x[0])
    return x

  monkeypatch.setattr(activations.Shards, 'read', counting)
  together = sweep.run_sweep(config, runs, str(tmp_path / 'together'), log=lambda line: None)
  rows_together, counted['rows'] = counted['rows'], 0
  monkeypatch.setattr(sweep, 'shared_stream', lambda *args: None)
  apart = sweep.run_sweep(config, runs, str(tmp_path / 'apart'), log=lambda line: None)
  train_rows = 2 * (320 // 32) * 32  # 2 epochs of 10 batches
  assert rows_together < counted['rows'] and counted['rows'] - rows_together == train_rows
  for name, summary in apart.items():
    assert together[name]['train/loss'] == pytest.approx(summary['train/loss'], rel=1e-6), name


def test_an_imported_saelens_sae_is_evaluated_on_aelab_data(trained, tmp_path):
  path, runs = trained
  export.export_saelens(runs['topk'], str(tmp_path / 'out'))
  export.main([f'--import_saelens={tmp_path / "out"}', f'--workdir={tmp_path / "new"}', f'--data=activations={path}'])
  summary = evaluate.evaluate_workdir(str(tmp_path / 'new'))
  x = data.load(config_lib.set_data(config_lib.base('sae'), f'activations={path}').data).test  # 4 held-out tokens
  x_hat = aelab.load(str(tmp_path / 'new')).reconstruct(x)
  explained = 1 - np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
  assert summary['epochs'] == 1 and summary['test/l0'] <= 3
  assert summary['test/explained_variance'] == pytest.approx(explained, rel=1e-4)
