#!/usr/bin/env bash
# The checks that need a GPU, as one script (run on a CUDA machine from the repository root):
# build the extension with its CUDA kernels, run the device-parametrised tests on CUDA, then the
# GPU benchmarks. Writes its logs and JSON under ${OUT:-bench_out}.
#     bash benchmarks/gpu_check.sh
set -o pipefail
OUT=${OUT:-bench_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
PY=${PY:-python3}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/machine.txt"
t0=$(date +%s)
$PY setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/machine.txt"
$PY -c "import torch, das._C; print('CUDA kernels:', [n for n in ('blur', 'blur_adjoint', 'grad_step_batched', 'grad_step_batched_backward', 'cnn_forward_batched') if torch._C._dispatch_has_kernel_for_dispatch_key('das::' + n, 'CUDA')])" | tee -a "$OUT/machine.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_operators.py tests/test_batched_ops.py -k cuda 2>&1 | tee "$OUT/tests_cuda.log" | tail -15
tests=$?  # the benchmarks run either way; the script's status is the tests' (then the benchmarks')
$PY benchmarks/bench_ops.py --device cuda --out "$OUT/ops_cuda.json" 2>&1 | tee "$OUT/bench_ops.log" || exit
$PY benchmarks/bench_gpu.py ${BENCH_GPU_ARGS:---epochs 5 --trials 1,16,128 --cpu-trials 8} --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench_gpu.log" || exit
exit $tests
