#!/usr/bin/env bash
# One-shot CUDA check for a lent GPU machine (H200, ~8 minutes): the CUDA tests, then
# SpikingResformer-Ti and -S at 224x224, T=4, batch 64, bf16 autocast, eager and torch.compile'd
# training steps: images/s, peak CUDA memory and model-FLOPs utilisation against the H200's
# dense bf16 peak (989.4 TFLOP/s, spec sheet). Results land in $OUT and benchmarks/results/.
#
# The device machine starts bare and offline, with its own python3 and torch (2.11 when last
# seen) but without spikingjelly and loguru: carry them as wheels. Once, here:
#     bash benchmarks/gpu_check.sh --fetch-wheels      # downloads into .whl/ (git-ignored)
# then with the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"],
# timeout_s=590). Every stage has its own timeout, so a slow compile still returns the rest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl spikingjelly==2.0.0 loguru==0.7.3
    exit $?
fi

OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/gpu_check.log"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { log "wheel install failed (run --fetch-wheels here)"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    > "$OUT/nvidia_smi.csv" 2>&1
python3 -c "import torch, spikingjelly; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/gpu_check.log"

# 1. CUDA tests: every test that needs a GPU (their names carry cuda), plus the perf options.
log "CUDA tests"
timeout 150 python3 -m pytest tests/test_models.py tests/test_perf_options.py -k cuda -q \
    -p no:cacheprovider > "$OUT/cuda_tests.txt" 2>&1
log "CUDA tests exit code $? (tail of $OUT/cuda_tests.txt:)"
tail -5 "$OUT/cuda_tests.txt" | tee -a "$OUT/gpu_check.log"

# 2. Ti and S at 224, T=4, batch 64, bf16: eager and compiled training steps.
for model in ti s; do
    log "benchmark spikingresformer_$model"
    timeout 170 python3 benchmarks/bench.py --device cuda --model "spikingresformer_$model" \
        --img-size 224 --T 4 --batch 64 --modes bf16,bf16+channels_last+stem_once,bf16+compile \
        --tasks train --reps 5 \
        --name "gpu_${model}224_b64_bf16" \
        --notes "CUDA, bf16 autocast; SpikingJelly's CUDA LIF kernels (srlib's fused LIF defers \
to them on CUDA); MFU against 989.4 TFLOP/s dense bf16." >> "$OUT/gpu_check.log" 2>&1
    log "exit code $?"
    cp "benchmarks/results/gpu_${model}224_b64_bf16".* "$OUT/" 2>/dev/null
done

# 3. Compiled forward: graph breaks (expected none).
timeout 60 python3 - >> "$OUT/gpu_check.log" 2>&1 <<'PY'
import torch, srlib
model = srlib.create_model("spikingresformer_ti").cuda()
explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 224, 224, device="cuda"))
print("dynamo graphs", explanation.graph_count, "graph breaks", explanation.graph_break_count)
for reason in explanation.break_reasons:
    print("  break:", reason.reason)
PY
log "done"
