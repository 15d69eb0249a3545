#!/usr/bin/env bash
# One-shot check of the CUDA engine on a GPU machine (about 5-9 minutes on one H100/H200):
#   1. build and install compactcortex with the CUDA module (COMPACTCORTEX_CUDA=ON, nvcc for
#      this GPU's architecture),
#   2. pytest tests/test_cuda.py -v (the GPU tests; the CPU-emulation tests are left to machines
#      without a GPU, to save time),
#   3. python benchmarks/bench_cuda.py,
#   4. copy logs and the benchmark JSON to $OUT/gpu_check/ (if OUT is set).
#
# Run from the repository root:   bash benchmarks/gpu_check.sh [--quick]
#   --quick       benchmark smoke test (bench_cuda.py --quick) instead of the full benchmark
# Environment:
#   PYTHON        interpreter to use (default: python3). The machine has no network: it must
#                 already have torch (a CUDA build), numpy, safetensors, pillow, tqdm, matplotlib,
#                 pytest, and the build tools scikit-build-core, nanobind, cmake and ninja.
#                 If PYTHON is a virtual environment the package is installed into it; otherwise
#                 into a fresh venv ($CC_VENV, default /tmp/cc-gpu-venv) created with
#                 --system-site-packages, so the machine's torch is used as it is.
#   BENCH_TIMEOUT seconds for the benchmark (default 330); results so far are kept if cut short.
#   TEST_TIMEOUT  seconds for pytest (default 240).
# Exit status: 0 when every step passed, 1 otherwise (logs say which).
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"
LOG=$(mktemp -d /tmp/cc-gpu-check.XXXXXX)
STATUS=0
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }
fail() { echo "FAILED: $*"; STATUS=1; }

finish() {
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT/gpu_check"
        cp "$LOG"/*.log "$OUT/gpu_check/" 2>/dev/null
        cp "$REPO"/benchmarks/results/bench_cuda_*.json "$OUT/gpu_check/" 2>/dev/null
        echo "copied logs and results to $OUT/gpu_check/"
    fi
    echo "gpu_check: $([ $STATUS = 0 ] && echo OK || echo FAILED) after $(( $(date +%s) - start ))s (logs in $LOG)"
    exit $STATUS
}

step "environment"
PY=${PYTHON:-python3}
{
    nvidia-smi 2>&1 | head -20
    for c in nvcc /usr/local/cuda/bin/nvcc; do command -v $c >/dev/null 2>&1 && { $c --version | tail -2; break; }; done
    "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable, "venv" if sys.prefix != sys.base_prefix else "system")
import shutil
for tool in ("cmake", "ninja"):
    print(f"{tool:18s} {shutil.which(tool) or 'not on PATH (the pip module of that name also works)'}")
for m in ("torch", "numpy", "nanobind", "scikit_build_core", "pytest", "safetensors"):
    try:
        mod = importlib.import_module(m)
        print(f"{m:18s} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"{m:18s} MISSING ({type(e).__name__}: {e})")
try:
    import torch
    print("torch.cuda", torch.version.cuda, "available", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
EOF
} 2>&1 | tee "$LOG/env.log"

if ! command -v nvcc >/dev/null 2>&1; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
fi
command -v nvcc >/dev/null 2>&1 || { fail "no nvcc on this machine: cannot build the CUDA module"; finish; }

# Install target: the current venv, or a fresh venv that sees the system's packages (torch).
if "$PY" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)'; then
    VPY=$PY
else
    VENV=${CC_VENV:-/tmp/cc-gpu-venv}
    [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV" || { fail "venv"; finish; }
    VPY=$VENV/bin/python
fi

step "build and install (COMPACTCORTEX_CUDA=ON)"
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
t0=$(date +%s)
"$VPY" -m pip install -v --no-build-isolation --no-deps --no-index \
    -C cmake.define.COMPACTCORTEX_CUDA=ON -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -C build-dir=/tmp/cc-gpu-build . > "$LOG/build.log" 2>&1 \
    || { tail -40 "$LOG/build.log"; fail "build (see build.log)"; finish; }
echo "built for sm_$ARCH in $(( $(date +%s) - t0 ))s"
grep -E "compactcortex: building the CUDA engine|Successfully installed" "$LOG/build.log"
# Outside the source tree, so that the installed package is what gets imported.
(cd /tmp && "$VPY" -c "import compactcortex.engine.cuda as c, compactcortex as cc; print(cc.__file__); print('cuda_status:', c.cuda_status())") 2>&1 | tee -a "$LOG/env.log"

step "pytest tests/test_cuda.py (GPU tests)"
timeout "${TEST_TIMEOUT:-240}" "$VPY" -m pytest tests/test_cuda.py -v -k "not emulated" -p no:cacheprovider \
    2>&1 | tee "$LOG/pytest.log" | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|error" | tail -60
[ "${PIPESTATUS[0]}" = 0 ] || fail "pytest (see pytest.log)"

step "benchmark"
timeout "${BENCH_TIMEOUT:-330}" "$VPY" benchmarks/bench_cuda.py $QUICK 2>&1 | tee "$LOG/bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "benchmark (see bench.log; partial results are in the JSON)"
finish
