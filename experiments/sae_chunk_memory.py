"""XLA's memory of one streamed chunk of a group of 16 ReLU SAEs, by ``train.models_at_once``.

  python experiments/sae_chunk_memory.py --d_in=512 --width=2048 --batch_size=4096 --at_once=0,1,2,4

Compiles (does not run) the group's chunk program (``Program.chunk``: ``--chunk`` batches of every model,
the state donated) of the 16 settings of ``experiments/bench_sae_stream.py`` for one width, on a small
folder of Gaussian activations written to ``--dir``, and prints per ``--at_once`` one JSON line from
``Compiled.memory_analysis()``: the temporary buffers (``temp_mb``), the arguments (the stacked states,
the chunk, keys, ``hp``: ``argument_mb``), the outputs and how much of them alias the donated state.
"""
import argparse
import json
import os
import sys
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import bench_sae_stream as bench  # noqa: E402
from aelab.data import stream  # noqa: E402
from aelab.train import engine, sweep  # noqa: E402


def chunk_memory(config, width: int, args: argparse.Namespace) -> dict:
  members = sweep.members(config, [{'model.latent_dim': width, **s} for s in bench.settings()])
  dataset = stream.load(members[0].config.data)
  runs = [engine.make_run(m.config, dataset.shape, m.name) for m in members]
  program = engine.Program(runs, dataset)
  state = jax.eval_shape(program.init, jnp.stack([r.init_key for r in runs]), jnp.zeros(len(runs)))
  x = jax.ShapeDtypeStruct((args.chunk, args.batch_size, args.d_in), jnp.float32)
  keys, hp = jnp.stack([r.train_key for r in runs]), engine.stack([r.hp for r in runs])
  memory = program.chunk.lower(state, x, 1, keys, hp).compile().memory_analysis()
  mb = lambda n: round(n / 1e6)  # noqa: E731
  return {'models': len(runs), 'width': width, 'd_in': args.d_in, 'batch_size': args.batch_size, 'chunk': args.chunk,
          'models_at_once': config.train.models_at_once, 'temp_mb': mb(memory.temp_size_in_bytes),
          'argument_mb': mb(memory.argument_size_in_bytes), 'output_mb': mb(memory.output_size_in_bytes),
          'alias_mb': mb(memory.alias_size_in_bytes)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--d_in', type=int, default=512)
  parser.add_argument('--width', type=int, default=2048)
  parser.add_argument('--batch_size', type=int, default=4096)
  parser.add_argument('--chunk', type=int, default=2)
  parser.add_argument('--at_once', default='0,1,2,4', help='values of train.models_at_once (0: all)')
  parser.add_argument('--dir', default=os.path.join(tempfile.gettempdir(), 'aelab_sae_chunk_memory'))
  args = parser.parse_args()
  path = os.path.join(args.dir, 'activations')
  bench.write_folder(path, 2 * args.batch_size, args.d_in, args.batch_size)
  options = argparse.Namespace(chunk=args.chunk, test_fraction=0.05, widths=[args.width], epochs=1,
                               batch_size=args.batch_size, max_train_tokens=0, models_at_once=0)
  for at_once in [int(a) for a in args.at_once.split(',')]:
    options.models_at_once = at_once
    print(json.dumps(chunk_memory(bench.base_config(path, options), args.width, args)), flush=True)


if __name__ == '__main__':
  main()
