"""XLA backend optimization levels that aelab sets per program on the CPU, and why (None elsewhere: they are
measured on XLA's CPU backend). XLA's default is level 2; the test suite lowers every program to 0 through
``XLA_FLAGS`` (``tests/conftest.py``), which these options override where a program needs its own level.

- :data:`LONG_RUNNING` (2): nets that run thousands of steps in one program (``aelab.nn.fit``: the
  fd_classifier, a PixelCNN prior), whose run time, not compilation, counts (at level 0 the fd_classifier
  trained 8x slower).
- :data:`INIT` (1): a training group's init program, which runs once but whose parameter initializers (a
  threefry and a truncated normal per weight) took 1.4-1.9 s to compile beside the epoch program on 2 cores;
  about 0.4 s less at level 1, with the same parameters bit for bit (``tests/test_engine.py``; level 0 changed
  4% of them by one ulp). ``XLA_FLAGS`` setting the level itself wins.
- :data:`INTEGER` (0): small programs of integer hashing and sorting only (PRNG keys, the data split's
  permutation), whose results no level changes (``tests/test_data.py``).
"""
import os

import jax

LONG_RUNNING = {'xla_backend_optimization_level': 2}
INIT = {'xla_backend_optimization_level': 1}
INTEGER = {'xla_backend_optimization_level': 0}


def on_cpu(options: dict, unless_xla_flags: bool = False) -> dict | None:
  """``options`` when JAX runs on the CPU, else None; also None with ``unless_xla_flags`` when ``XLA_FLAGS``
  sets the optimization level itself (the user's choice wins)."""
  if jax.default_backend() != 'cpu':
    return None
  if unless_xla_flags and 'xla_backend_optimization_level' in os.environ.get('XLA_FLAGS', ''):
    return None
  return options
