#!/usr/bin/env bash
# The CUDA execution provider check, for a machine with an NVIDIA GPU where the project's test dependencies import
# (pip install -e '.[test]') and `import onnxruntime` is a CUDA build: `pip uninstall -y onnxruntime && pip install
# onnxruntime-gpu` (both packages install the same module).
#
#   bench/cuda_check.sh            # PYTHON=python3 by default; logs also go to $OUT (default /tmp/cuda-check)
#
# 1. the parity, export and runtime tests with every exported graph on CUDA (RNNSERVE_TEST_PROVIDER=cuda): the
#    Keras fixtures within |d| <= 1e-5 + 1e-5 |y|, Scan, Loop and unrolled graphs, streams in chunks;
# 2. the service tests (REST, stream, failure paths, both executors, memory and Redis stores) with the server on
#    CUDA (RNNSERVE_PROVIDER=cuda);
# 3. onnxruntime alone on the bench model's graphs, CPU then CUDA (bench.compute);
# 4. the served figures with the server on CUDA (bench.run_all, cases a, d, e).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/cuda-check}
mkdir -p "$OUT"
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || status=1
"$PYTHON" -c 'import onnxruntime as ort; print("onnxruntime", ort.__version__, ort.get_available_providers())'
"$PYTHON" -c 'import onnxruntime as ort, sys; sys.exit("CUDAExecutionProvider" not in ort.get_available_providers())' ||
  { echo "onnxruntime here has no CUDAExecutionProvider: install onnxruntime-gpu"; exit 2; }

echo "== 1. parity, export and runtime tests on CUDA"
RNNSERVE_TEST_PROVIDER=cuda "$PYTHON" -m pytest -q -p no:cacheprovider tests/parity tests/export \
  tests/modeling/test_export_roundtrip.py tests/runtime 2>&1 | tee "$OUT/tests-graphs.log" | tail -8
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. service tests with the server on CUDA"
RNNSERVE_PROVIDER=cuda "$PYTHON" -m pytest -q -p no:cacheprovider tests/service tests/batching \
  tests/test_bundled_models.py 2>&1 | tee "$OUT/tests-service.log" | tail -8
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 3. onnxruntime alone (us per call; timesteps per second)"
models=$(mktemp -d)
"$PYTHON" -c "from bench.bench_model import write_bench_model; write_bench_model(__import__('pathlib').Path('$models'))"
for provider in cpu cuda; do
  printf '%s ' "$provider"
  "$PYTHON" -m bench.compute "$models" --provider "$provider" --seconds 1 --batches 1,64,256,1024 \
    --sequences 32x100,256x100 | tee "$OUT/compute-$provider.json"
done

echo "== 4. served, with the server on CUDA"
"$PYTHON" -m bench.run_all --rounds 2 --seconds 2 --cases a,d,e --skip-memory --env RNNSERVE_PROVIDER=cuda \
  --json "$OUT/run_all-cuda.json" 2>&1 | tee "$OUT/run_all-cuda.log" | sed -n '/== figures/,$p'
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
