"""The published grids of Locatello et al. 2019 (Table 2): each method's weight x seeds, one population in one
compiled program (every swept field is a traced hyperparameter).

  python -m aelab.main --config=configs/dlib/base.py:method=beta_tcvae \\
      --sweep=configs/dlib/sweeps.py:method=beta_tcvae --workdir=runs/dlib/beta_tcvae

``arg``: comma-separated ``method=M`` (as configs/dlib/base.py; give both files the same one) and
``seeds=N`` (default 5; the paper trains 50 per setting). The weights: beta-VAE ``vae.kl_weight`` (beta);
AnnealedVAE ``vae.capacity_max`` (c_max, nats; gamma = 1000 is fixed); FactorVAE ``factor_vae.tc_weight``
(gamma); DIP-VAE-I ``dip_vae.dip_lambda_od`` with ``dip_lambda_d = 10 lambda_od``; DIP-VAE-II the same with
``dip_lambda_d = lambda_od``; beta-TCVAE ``beta_tcvae.tc_weight`` (beta).
"""
from aelab.train import sweep

LAMBDA_OD = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
# method -> {field: its values}, the fields of one method zipped (one weight sets all of them).
GRIDS = {
    'beta_vae': {'vae.kl_weight': (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)},
    'annealed_vae': {'vae.capacity_max': (5.0, 10.0, 25.0, 50.0, 75.0, 100.0)},
    'factor_vae': {'factor_vae.tc_weight': (10.0, 20.0, 30.0, 40.0, 50.0, 100.0)},
    'dip_vae_i': {'dip_vae.dip_lambda_od': LAMBDA_OD, 'dip_vae.dip_lambda_d': tuple(10 * w for w in LAMBDA_OD)},
    'dip_vae_ii': {'dip_vae.dip_lambda_od': LAMBDA_OD, 'dip_vae.dip_lambda_d': LAMBDA_OD},
    'beta_tcvae': {'beta_tcvae.tc_weight': (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)},
}


def parse(arg: str | None) -> tuple[str, int]:
  """``'method=M,seeds=N'`` -> ``(M, N)`` (defaults ``beta_vae``, 5)."""
  out = {'method': 'beta_vae', 'seeds': '5'}
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in out or not value:
      raise ValueError(f'configs/dlib/sweeps.py arg {item!r}: give method=M and seeds=N, comma-separated.')
    out[key] = value
  if out['method'] not in GRIDS:
    raise ValueError(f'configs/dlib/sweeps.py method={out["method"]!r}: choose one of {", ".join(GRIDS)}.')
  return out['method'], int(out['seeds'])


def weights(method: str, values: tuple | None = None) -> list[dict]:
  """The method's grid (or ``values`` of its first field, the others following its published ratio) as
  override dicts, one per weight."""
  grid = GRIDS[method]
  published = next(iter(grid.values()))
  values = published if values is None else values
  ratios = {f: v[0] / published[0] for f, v in grid.items()}
  return sweep.zipped(*(sweep.axis(f, [w * ratios[f] for w in values]) for f in grid))


def get_sweep(arg=None):
  method, seeds = parse(arg)
  return sweep.product(weights(method), sweep.axis('seed', range(seeds)))
