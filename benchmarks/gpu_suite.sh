#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_suite.py) on one GPU, stopped after 8 minutes whatever happens.
# Usage: bash benchmarks/gpu_suite.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
exec timeout 480 python benchmarks/gpu_suite.py "$@"
