#!/usr/bin/env bash
# The prepared accelerator check (experiments/device_check.py says what it measures): on a machine with a GPU
# where JAX, flax, optax, orbax and PyTorch are installed but nothing can be downloaded, it installs aelab's
# other dependencies from wheels carried with the checkout, then prints one JSON line, in under 8 minutes.
#
# Wheels, once, here in the repository root (a machine with PyPI), then carry .whl (and .mnist) to the device:
#   echo /.whl/ >> .git/info/exclude; echo /.mnist/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0 tensorboardX==2.6.4
#   cp -r ../shared/data/mnist .mnist    # the MNIST test set of step 3 (../shared does not travel)
# (The device image lacks only these two of what the check imports: KINDS.md lists its packages.)
#
#   bash experiments/device_check.sh            # full sizes
#   bash experiments/device_check.sh --small    # small sizes (the CPU; tests/test_device_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aelab_site \
    .whl/*.whl
  export PYTHONPATH="/tmp/aelab_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .mnist ] && [ ! -e ../shared/data/mnist ]; then
  mkdir -p ../shared/data && ln -s "$PWD/.mnist" ../shared/data/mnist
fi
export PYTHONUNBUFFERED=1
exec timeout 470 "$PYTHON" experiments/device_check.py "$@"
