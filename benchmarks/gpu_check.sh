#!/usr/bin/env bash
# The CUDA check: srlib's GPU tests, then training-step benchmarks of SpikingResformer-Ti and -S
# at 224x224, T = 4, on one CUDA GPU.
#
# What it needs: a Linux machine with one CUDA GPU and its driver, and this repository's Python
# environment (`source scripts/setup.sh`, or `conda env create -f environment.yml` and
# `pip install --no-deps spikingjelly==2.0.0 && pip install --no-deps -e .`). No dataset:
# the benchmarks use random images. About 8-10 minutes on one H100/H200-class GPU.
#
#     bash benchmarks/gpu_check.sh                # everything
#     BATCH=32 MODELS="ti" bash benchmarks/gpu_check.sh
#
# Where results go: benchmarks/results/gpu_<model>224_b<batch>_*.{md,csv} (the tables, with
# the GPU, driver and torch version named) and a log folder, $OUT (default
# /tmp/srlib_gpu_check): gpu_check.log, cuda_tests.txt, nvidia_smi.csv. Each stage has its own
# time limit, so a stuck compile still leaves the other results.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${OUT:-/tmp/srlib_gpu_check}"
BATCH="${BATCH:-64}"
MODELS="${MODELS:-ti s}"
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/gpu_check.log"; }

if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "no CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to check"
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    > "$OUT/nvidia_smi.csv" 2>&1
python3 -c "import torch, spikingjelly; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/gpu_check.log"

# 1. Every test that needs CUDA (they skip on the CPU).
log "CUDA tests"
timeout 600 python3 -m pytest tests -k cuda -q -p no:cacheprovider > "$OUT/cuda_tests.txt" 2>&1
log "CUDA tests exit code $? (tail of $OUT/cuda_tests.txt:)"
tail -5 "$OUT/cuda_tests.txt" | tee -a "$OUT/gpu_check.log"

# 2. Training steps, bf16 autocast: the plain model, the CUDA preset, and whole-model compile.
for model in $MODELS; do
    log "benchmark spikingresformer_$model, batch $BATCH"
    timeout 900 python3 benchmarks/bench.py --device cuda --model "spikingresformer_$model" \
        --img-size 224 --T 4 --batch "$BATCH" --modes plain+bf16,best+bf16,best+bf16+compile \
        --tasks train,infer --reps 5 --name "gpu_${model}224_b${BATCH}_bf16" \
        --notes "CUDA, bf16 autocast; SpikingJelly's CUDA LIF kernels." \
        >> "$OUT/gpu_check.log" 2>&1
    log "exit code $?"
done
log "done: tables in benchmarks/results/gpu_*, logs in $OUT"
