#!/usr/bin/env bash
# The GPU check, in one command (docs/gpu-check.md): on a GPU node without a network, installs
# what it lacks from the wheels that bench/gpu-wheels.sh made, then measures the GPU path within
# ten minutes and prints one table, also written to bench/out/gpu/gpu-check.md.
#
#   bench/gpu.sh [options]            options: python3 bench/gpu_check.py --help
#
# PYTHON names the node's Python, the one with JAX on CUDA (default: python3 on the PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
