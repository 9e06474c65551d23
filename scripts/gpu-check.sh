#!/usr/bin/env bash
# The whole GPU check of fp8q, on a Linux x64 machine with an NVIDIA GPU, the CUDA 13 libraries
# and Node 20+:
#   1. install (npm ci + build, skipped when node_modules and dist are there), then the CUDA
#      provider (fp8q setup-cuda, from the registry or from --provider <tgz|folder>);
#   2. device selection: `--device cuda` must fail naming the missing CUDA library while
#      LD_LIBRARY_PATH lacks them, and `auto` must pick CUDA once it has them;
#   3. the op and graph tests on CUDA (same references and tolerances as on CPU), and the layer
#      graphs' in-graph weight decode and session reuse (test/runtime-session-reuse.test.ts);
#   4. CPU against CUDA on the block-scale GEMM/GEMV and on MatMul in fp32/fp16/bf16, TF32 off
#      (fp8q's default) and on;
#   5. `fp8q verify` on CPU and CUDA, timed: the fixtures, and a synthetic Llama of 1.1B
#      parameters (scripts/make-synthetic-llama.py: Python with torch and safetensors).
# Logs and JSON go to --out (default ./gpu-check-out); a summary is printed at the end.
#
#   scripts/gpu-check.sh [--provider <tgz|folder>] [--out <dir>] [--skip <step,...>]
#
# LD_LIBRARY_PATH: when unset, the CUDA 13 folders found under /usr/local/cuda-13* and in Python
# venvs' nvidia/cu13/lib are used.
set -uo pipefail

cd "$(dirname "$0")/.."
provider=""
out="gpu-check-out"
skip=","
while [ $# -gt 0 ]; do
  case "$1" in
    --provider) provider="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip) skip=",$2,"; shift 2 ;;
    *) echo "usage: $0 [--provider <tgz|folder>] [--out <dir>] [--skip install,tests,compare,verify,fixtures,synthetic,synthetic-make,synthetic-verify]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failures=0

note() { echo "$*" | tee -a "$summary"; }
# step NAME CMD...: runs CMD with its output in $out/NAME.log, notes pass/fail and the time.
step() {
  local name="$1"; shift
  local t0; t0=$(date +%s.%N)
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local secs; secs=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
  if [ $rc -eq 0 ]; then note "PASS $name (${secs}s)"; else note "FAIL $name rc=$rc (${secs}s): see $out/$name.log"; failures=$((failures + 1)); fi
  return $rc
}
skipped() { case "$skip" in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

cuda_lib_path() {
  local dirs=()
  for d in /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do [ -e "$d/libcublasLt.so.13" ] && dirs+=("$d"); done
  for d in /opt/*/.venv/lib/python3*/site-packages/nvidia/cu13/lib /usr/local/lib/python3*/dist-packages/nvidia/cu13/lib; do [ -d "$d" ] && dirs+=("$d"); done
  (IFS=:; echo "${dirs[*]}")
}

note "gpu-check $(date -u +%FT%TZ) on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo 'no nvidia-smi'); node $(node --version)"

# 1. install
if ! skipped install; then
  [ -d node_modules ] || step npm-ci npm ci
  [ -f dist/runtime/device.js ] || step build npm run build
  step setup-cuda node bin/fp8q.js setup-cuda ${provider:+"$provider"}
fi

# 2. device selection, before and after the CUDA libraries are on the path
cuda_libs="${LD_LIBRARY_PATH:-}"
if [ -z "$cuda_libs" ]; then cuda_libs=$(cuda_lib_path); fi
note "LD_LIBRARY_PATH for CUDA: $cuda_libs"
select_js='import("./dist/runtime/device.js").then(async (d) => { const r = process.argv[1]; try { console.log(JSON.stringify(await d.selectDevice(r))); } catch (e) { console.log(e.message); process.exit(1); } })'
# Without the libraries: must fail and name one (the check succeeds when the message does).
env -u LD_LIBRARY_PATH node -e "$select_js" cuda >"$out/device-without-libs.log" 2>&1
if grep -q "libcublas\|libcurand\|libcudart" "$out/device-without-libs.log"; then note "PASS device-without-libs: $(head -c 400 "$out/device-without-libs.log")";
else note "NOTE device-without-libs (libraries also found without LD_LIBRARY_PATH?): $(head -c 400 "$out/device-without-libs.log")"; fi
export LD_LIBRARY_PATH="$cuda_libs"
step device-auto node -e "$select_js" auto && note "  $(cat "$out/device-auto.log")"
grep -q '"device":"cuda"' "$out/device-auto.log" || { note "FAIL auto did not select CUDA"; failures=$((failures + 1)); }

# 3. op and graph tests on CUDA, then the same on CPU for the record
if ! skipped tests; then
  tests=(test/ops-*.test.ts test/onnx-builder.test.ts test/device-select.test.ts test/runtime-session-reuse.test.ts)
  step tests-cuda env FP8Q_TEST_DEVICE=cuda node --import tsx --test "${tests[@]}"
  grep -E "^# (tests|pass|fail)" "$out/tests-cuda.log" | tr '\n' ' ' | sed 's/^/  /' | tee -a "$summary"; echo | tee -a "$summary"
  step tests-cpu env FP8Q_TEST_DEVICE=cpu node --import tsx --test "${tests[@]}"
fi

# 4. CPU against CUDA, TF32 off (default) and on
if ! skipped compare; then
  step compare-tf32-off env NVIDIA_TF32_OVERRIDE=0 node --import tsx scripts/cuda-compare.ts
  step compare-tf32-on env NVIDIA_TF32_OVERRIDE=1 node --import tsx scripts/cuda-compare.ts
  step compare-tf32-off-m2048 env NVIDIA_TF32_OVERRIDE=0 node --import tsx scripts/cuda-compare.ts --m 2048 --repeats 5
fi

# 5. verify on the fixtures and a synthetic 1.1B model, CPU against CUDA
if [ -f scripts/gpu-verify.sh ] && ! skipped verify; then
  source scripts/gpu-verify.sh
fi

note "failures: $failures"
exit $((failures > 0))
