#!/usr/bin/env bash
# GPU check (issue 8): fine-tune EfficientNet-Lite0 on Magnetic-tile at 224 px on CUDA with
# mixed precision; prints samples/s and test AP. About 3-5 minutes on one H100-class GPU.
# Not part of CI. Usage: bash benchmarks/gpu_finetune.sh [DEVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${1:-1}
DATA=${DATA:-magnetic-tile:../shared/data/magnetic-tile}
OUT=${OUT:-runs/gpu_finetune}
PY=${PY:-.venv/bin/python}
rm -rf "$OUT"
"$PY" -m imbvision.cli train --data "$DATA" --out "$OUT" --mode finetune \
  --accelerator cuda --devices "$DEVICES" --precision bf16-mixed --image-size 224 \
  --epochs 8 --batch-size 64 --workers 8 --patience 3 --lr 1e-3 \
  --strategy focal+balanced-sampler+copy-paste --train-positive-rate 0.05
"$PY" - "$OUT" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/results.json"))
hist = r["train"].get("history", [])
rates = [h.get("samples_per_s_steady") or h.get("samples_per_s") for h in hist if h]
print(json.dumps({"test_ap": r["test"]["ap"], "test_ap_ci": r["test"].get("ap_ci"),
                  "samples_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
                  "epochs": len(hist), "best_val_ap": r["train"].get("best_val_ap")}, indent=2))
PY
