"""aelab: autoencoders as pure JAX/Flax functions.

``aelab.load(workdir)`` returns a trained run (config, parameters, jitted encode / decode / reconstruct /
sample); see ``aelab/api.py``.
"""


def load(workdir: str, dataset=None):
  """``aelab.api.load``: a trained run of ``workdir`` (imported on first use, so that ``import aelab``
  stays light)."""
  from aelab import api  # noqa: PLC0415
  return api.load(workdir, dataset)
