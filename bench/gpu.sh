#!/usr/bin/env bash
# Training throughput of the RETDM trainer against a plain BCE loop (issue #6): vgg16 and
# efficientnet_lite0 at 224 px, batch 256, bf16, channels-last, pinned memory and workers on CUDA;
# a reduced CPU run (64 px, batch 16) where there is no CUDA. Prints the figures and which mode ran,
# and writes bench/gpu_results.md and bench/gpu_results.parquet. See bench/bench_gpu.py.
#
# Usage: bash bench/gpu.sh [--compile] [--mode gpu|cpu-reduced] [--backbones vgg16] [...]
#        (every option goes to bench/bench_gpu.py; --help lists them)
# Env:   PYTHON (default: .venv/bin/python, else python3), GPU_BENCH_TIMEOUT (default 300 s:
#        the issue's limit; --compile adds the compilation, so give it more, e.g. 600).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
limit="${GPU_BENCH_TIMEOUT:-300}"
command=("$PYTHON" bench/bench_gpu.py --out bench/gpu_results "$@")
if command -v timeout >/dev/null 2>&1; then
    command=(timeout --kill-after=15 "$limit" "${command[@]}")
else
    echo "bench/gpu.sh: no 'timeout' command here; running without the ${limit} s limit" >&2
fi

start=$SECONDS
status=0
"${command[@]}" || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "bench/gpu.sh: stopped after ${limit} s (GPU_BENCH_TIMEOUT); fewer --steps/--rounds, or a larger limit" >&2
fi
echo "bench/gpu.sh: $((SECONDS - start)) s wall, exit status ${status}" >&2
exit $status
