#!/usr/bin/env bash
# One pass on a GPU machine: run every GPU test, then time the kernel ladders.
#
#   OUT=/some/folder bash benchmarks/gpu_session.sh [pytest selection...]
#
# Logs and results go to $OUT (gpu-tests.log, junit.xml, bench.log, gpu-bench.{json,md},
# auto.json: the table of the GPU "auto" rungs, which the benchmark writes).
# TEST_TIMEOUT / BENCH_TIMEOUT bound each half in seconds; BENCH_ARGS is passed to
# bench_gpu.py (default: BENCH_DEFAULT_ARGS below; BENCH_ARGS=skip skips it). Everything
# runs from the source tree itself (a clone imports without installing), with the
# machine's NumPy, CuPy and PyTorch.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for logs and results}
repo=$(cd "$(dirname "$0")/.." && pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
selection=("$@")
[ ${#selection[@]} -eq 0 ] && selection=(-m gpu tests)
(cd "$repo" && timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q \
    -p no:cacheprovider -n "${WORKERS:-8}" --timeout 240 -rfE --tb=short \
    --junitxml="$OUT/junit.xml" "${selection[@]}") >"$OUT/gpu-tests.log" 2>&1
echo "pytest exit $?"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu-tests.log" | tail -40
[ "${BENCH_ARGS:-}" = skip ] && exit 0
# The two halves' timeouts together fit one 10-minute device command. The benchmark
# writes its JSON and Markdown after each part (conv ladder, linear ladder, each step
# setting), so a run cut off by BENCH_TIMEOUT keeps the parts it finished. Its time is a setup that does not depend on the runs (compiling, cuDNN's autotuning,
# building the models) plus, per run, every rung of every ladder on every layer and every
# training-step setting. The defaults keep all of those and take fewer runs of each than
# bench_gpu.py's own (10 after 3 warm-up): CUDA-event medians of kernels lasting
# milliseconds settle within a few runs, and the slow rungs (tinyvgg.bench.SLOW_KERNELS)
# get a third of them anyway.
BENCH_DEFAULT_ARGS="--repeats 5 --warmup 2"
cd "$repo" && timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/bench_gpu.py \
    ${BENCH_ARGS:-$BENCH_DEFAULT_ARGS} \
    --out "$OUT/gpu-bench" 2>&1 | tee "$OUT/bench.log" | tail -25
# the conv ladder's winners, which "auto" reads: commit it as kernels/auto.json
[ -f kernels/auto.json ] && cp kernels/auto.json "$OUT/auto.json"
