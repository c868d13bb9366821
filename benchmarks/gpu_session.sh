#!/usr/bin/env bash
# One pass on a GPU machine: install, run every GPU test, then time the kernel ladders.
#
#   OUT=/some/folder bash benchmarks/gpu_session.sh [pytest selection...]
#
# Logs and results go to $OUT (gpu-tests.log, junit.xml, bench.log, gpu-bench.{json,md}).
# TEST_TIMEOUT / BENCH_TIMEOUT bound each half in seconds; BENCH_ARGS is passed to
# bench_gpu.py (BENCH_ARGS=skip skips it). The tests run from a copy of tests/ against the
# installed package, because the source tree's tinyvgg/ lacks the kernels subpackage.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for logs and results}
repo=$(cd "$(dirname "$0")/.." && pwd)
site=/tmp/tinyvgg-site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m pip install -q --no-build-isolation --no-deps --no-compile --target "$site" "$repo" \
    >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
export PYTHONPATH=$site
rm -rf /tmp/tinyvgg-tests && cp -r "$repo/tests" /tmp/tinyvgg-tests
cp "$repo/pytest.ini" /tmp/tinyvgg-tests/
selection=("$@")
[ ${#selection[@]} -eq 0 ] && selection=(-m gpu .)
(cd /tmp/tinyvgg-tests && timeout "${TEST_TIMEOUT:-300}" python3 -m pytest -q -c pytest.ini \
    -p no:cacheprovider -n "${WORKERS:-8}" --timeout 240 -rfE --tb=short \
    --junitxml="$OUT/junit.xml" "${selection[@]}") >"$OUT/gpu-tests.log" 2>&1
echo "pytest exit $?"
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/gpu-tests.log" | tail -40
[ "${BENCH_ARGS:-}" = skip ] && exit 0
cd "$repo" && timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/bench_gpu.py ${BENCH_ARGS:-} \
    --out "$OUT/gpu-bench" 2>&1 | tee "$OUT/bench.log" | tail -25
