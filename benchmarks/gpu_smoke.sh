#!/usr/bin/env bash
# GPU smoke test (one NVIDIA GPU, no network, under 8 minutes): build the default student and a quick
# qponder-synth, run a few bf16 SFT and GRPO steps on the GPU, print tokens/s and peak GPU memory.
#
#   benchmarks/gpu_smoke.sh [WORK_DIR]            uses the current environment (python on PATH, or $PYTHON)
#   WHEELS=dir benchmarks/gpu_smoke.sh [WORK]     makes a venv in WORK/venv from the wheels in dir (no index)
#   DRY_RUN=1 benchmarks/gpu_smoke.sh [WORK]      syntax, arguments and imports only; runs on a CPU machine
#   SFT_STEPS=20 GRPO_STEPS=4                     step counts (defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/gpu_smoke}
mkdir -p "$WORK"
PY=${PYTHON:-python3}
if [[ -n "${WHEELS:-}" ]]; then
  [[ -d "$WHEELS" ]] || { echo "error: WHEELS=$WHEELS is not a folder" >&2; exit 2; }
  "$PY" -m venv "$WORK/venv"
  PY="$WORK/venv/bin/python"
  # the carried wheels must hold qponder's dependencies (a CUDA torch build included): nothing is downloaded
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e .
fi
"$PY" -c "import qponder" 2>/dev/null || { echo "error: qponder is not importable with $PY; pass WHEELS=dir or PYTHON=..." >&2; exit 2; }
if [[ -n "${DRY_RUN:-}" ]]; then
  exec "$PY" benchmarks/gpu_smoke.py --work "$WORK" --dry-run
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "error: no CUDA GPU visible to torch ($("$PY" -c 'import torch; print(torch.__version__)')): a CPU build, or no driver" >&2; exit 2; }
QP=("$PY" -m qponder.cli)
[[ -f "$WORK/student/model.safetensors" ]] || "${QP[@]}" model init --preset default --out "$WORK/student"
[[ -f "$WORK/synth/metas/train.json" ]] || "${QP[@]}" data build --quick --out "$WORK/synth"
rm -rf "$WORK/sft" "$WORK/grpo"  # timings of a fresh run, not of a resumed one
timeout 420 "$PY" benchmarks/gpu_smoke.py --work "$WORK" --sft-steps "${SFT_STEPS:-20}" --grpo-steps "${GRPO_STEPS:-4}"
echo "results: $WORK/gpu_smoke.json"
