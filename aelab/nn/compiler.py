"""XLA compiler options that aelab sets per program on the CPU, and why (None elsewhere: they are measured on
XLA's CPU backend). XLA's defaults are optimization level 2 and its MLIR fusion emitters; the test suite
compiles every program at level 0 with the older emitters through ``XLA_FLAGS`` (``tests/conftest.py``), which
these options override where a program needs its own.

- :data:`LONG_RUNNING` (level 2): nets that run thousands of steps in one program (``aelab.nn.fit``: the
  fd_classifier, a PixelCNN prior), whose run time, not compilation, counts (at level 0 the fd_classifier
  trained 8x slower).
- :data:`ONCE` (level 1 and the older, non-MLIR fusion emitters, ``xla_cpu_use_fusion_emitters=False``):
  programs that run once per training, whose compilation is nearly all of their cost: the init program (its
  parameter initializers, a threefry and a truncated normal per weight, took 1.4-1.9 s to compile beside the
  epoch program on 2 cores) and the end-of-training ``final`` program. The main job's cold start: 6.1 s ->
  5.7 s (paired). Their outputs are bit for bit those of XLA's defaults (``tests/test_engine.py``; the older emitters
  at level 2 changed up to 7% of a final figure's pixels by one ulp, level 0 4% of the initial weights).
  ``XLA_FLAGS`` setting either option itself wins. The epoch program keeps XLA's defaults: with the older
  emitters it compiled 0.4 s faster but ran 10% slower, and its numbers are not guaranteed to stay the same.
- :data:`INTEGER` (level 0 and the older emitters): small programs of integer hashing and sorting only
  (PRNG keys, the data split's permutation), whose results no level changes (``tests/test_data.py``).
"""
import os

import jax

EMITTERS = 'xla_cpu_use_fusion_emitters'
LONG_RUNNING = {'xla_backend_optimization_level': 2}
ONCE = {'xla_backend_optimization_level': 1, EMITTERS: False}
INTEGER = {'xla_backend_optimization_level': 0, EMITTERS: False}
# XLA's own defaults, what every documented number was computed with (the tests compare against them).
DEFAULT = {'xla_backend_optimization_level': 2, EMITTERS: True}


def on_cpu(options: dict, unless_xla_flags: bool = False) -> dict | None:
  """``options`` when JAX runs on the CPU, else None; with ``unless_xla_flags``, those ``XLA_FLAGS`` sets
  itself are left out (the user's choice wins)."""
  if jax.default_backend() != 'cpu':
    return None
  if unless_xla_flags:
    flags = os.environ.get('XLA_FLAGS', '')
    options = {k: v for k, v in options.items() if k not in flags}
  return options or None
