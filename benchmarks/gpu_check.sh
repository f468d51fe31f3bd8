#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go: the `gpu` tests, then `onecard fit --measure` on one job of each
# family fit plans (predicted beside measured peaks, each kept as an observation for `onecard fit calibrate`), then
# the tune benchmark. Run from the repository root on a CUDA machine with the extras installed:
#
#     pip install -e '.[all,test]' && bash benchmarks/gpu_check.sh [--quick]
#
# --quick stops after the tests and the --measure rows (about 5 minutes on one H100); the full run adds
# benchmarks/tune_gpu.py (about 10 minutes). Nothing downloads: every model is built from its config with random
# weights. Each step prints its own table; the script stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 YOLO_OFFLINE=1

python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== pytest -m gpu"
python -m pytest -m gpu -q tests

echo "== onecard fit --measure: predicted vs measured, one job per family"
measure() { echo "-- onecard fit $*"; onecard fit "$@" --measure; }
measure smollm2-135m --job train --method lora --seq 1024 --batch 4
measure sd15 --job infer --quant fp16 --batch 4
measure sd15 --job train --batch 1
measure sdxl --job infer --quant fp16 --batch 1
measure yolov8s --job train --batch 16 --imgsz 640
measure yolov8s-seg --job train --batch 16 --imgsz 640
measure yolov8n-pose --job train --batch 16 --imgsz 640
measure yolov8n-cls --job train --batch 64 --imgsz 224
measure whisper-large-v3 --runtime transformers --job infer --beam 5
measure whisper-small --runtime transformers --job train --method lora --batch 4

echo "== the small YOLO job's reserved floor: the AMP check's cache, cuBLAS and cuDNN workspaces (not yet run on a GPU)"
python benchmarks/fit_yolo_floor_gpu.py cls
CUBLAS_WORKSPACE_CONFIG=:0:0 python benchmarks/fit_yolo_floor_gpu.py cls
CUDNN_CONV_WSCAP_DBG=8 python benchmarks/fit_yolo_floor_gpu.py cls
python benchmarks/fit_yolo_floor_gpu.py det

echo "== the CUDA context, lazy and eager (fit's cuda_module_loading knob counts 0.45 GiB + 362 MiB; not yet run on a GPU)"
python benchmarks/fit_context_gpu.py

echo "== detect: yolov8s training peak (batch 16, 640 px) against fit's prediction; detect bench on CUDA"
python -c "import tensorrt" 2>/dev/null || echo "(tensorrt not installed: detect bench lists engine as skipped; pip install tensorrt)"
python benchmarks/detect.py --gpu

echo "== diffuse: SD 1.5 LoRA at 512 px batch 1 peak vs fit (within 10%), SDXL 1024 px generation with fit's flags under 12 GiB"
python benchmarks/diffuse_gpu.py --gpu 4070ti

echo "== asr: faster-whisper peak memory against onecard fit (tiny.en; large-v3 only where cached), a LoRA fine-tune"
python benchmarks/asr.py --only gpu --gpu-min 3
python benchmarks/asr_finetune.py --size small --steps 6 --batch-size 16

if [[ "${1:-}" != "--quick" ]]; then
  echo "== benchmarks/tune_gpu.py"
  python benchmarks/tune_gpu.py
  echo "== vlm: LLaVA-1.5-7B-shaped (random weights, 14 GB written once) NF4 inference and QLoRA at the planner's settings, peak vs fit (within 10%), under 12 GiB"
  python benchmarks/vlm_tune.py --gpu 4070ti --steps 6
fi
