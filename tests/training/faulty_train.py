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
"""The training script with faults injected by patching the package (which has no test hooks of its own).

    python faulty_train.py '{"pause_at_step": 3}' <training flags>

- `pause_at_step`: inside that step (1-based), write `.test-paused-step-<N>` into --output_dir and sleep (a test then
  kills the process there);
- `pause_in_checkpoint`: the same inside the write of `checkpoint-<N>`, after its files are staged and before it is
  renamed into place (marker `.test-paused-checkpoint-<N>`);
- `nonfinite_steps`: a list of steps (1-based) whose loss is made NaN; `nonfinite_from`: every step from this one on;
- `count_host_reads`: count the reads of tensor values on the host (`item`, `tolist`, `__bool__`, `nonzero`, `cpu`,
  ...) inside the training loop, apart from loading batches (host data) and writing checkpoints, and write them with
  the step that made them to `.test-host-reads.json` in --output_dir.
"""

import atexit
import json
import sys
import time
from pathlib import Path

import torch

from diffusers_maskdm.train import main
from diffusers_maskdm.training import checkpointing, train


faults = json.loads(sys.argv[1])
argv = sys.argv[2:]
output_dir = Path(argv[argv.index("--output_dir") + 1])
step = {"current": 0}  # the 1-based step being computed, seen through `step_generator`


def pause(marker: str) -> None:
    (output_dir / marker).write_text("paused")
    time.sleep(600)


original_step_generator = train.step_generator


def step_generator(seed, process_index, global_step, micro_step=0, device="cpu"):
    step["current"] = global_step + 1
    if step["current"] == faults.get("pause_at_step") and micro_step == 0:
        pause(f".test-paused-step-{step['current']}")
    return original_step_generator(seed, process_index, global_step, micro_step, device)


original_loss = train.diffusion_loss


def diffusion_loss(*args, **kwargs):
    loss = original_loss(*args, **kwargs)
    bad = step["current"] in faults.get("nonfinite_steps", ()) or step["current"] >= faults.get("nonfinite_from", 1e9)
    return loss * float("nan") if bad else loss


original_publish = checkpointing.publish_folder


def publish_folder(temp, final):
    if final.name == f"checkpoint-{faults.get('pause_in_checkpoint')}":
        pause(f".test-paused-{final.name}")
    return original_publish(temp, final)


if faults.get("count_host_reads"):
    reads, counting = {"steps": [], "checkpoints": 0}, {"on": False}

    def counted(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if counting["on"]:
                reads["steps"].append([step["current"], name])
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "__bool__", "nonzero", "cpu", "numpy", "__float__", "__int__", "__index__"):
        setattr(torch.Tensor, name, counted(name))
    original_batches, original_save = train._resumable_batches, train.save_training_checkpoint

    def resumable_batches(*args):
        batches = original_batches(*args)
        while True:
            counting["on"] = False
            batch = next(batches)
            counting["on"] = True
            yield batch

    def save_training_checkpoint(run, state):
        counting["on"] = False
        reads["checkpoints"] += 1
        try:
            return original_save(run, state)
        finally:
            counting["on"] = state.global_step < run.max_train_steps  # the export after the last one is not a step

    train._resumable_batches, train.save_training_checkpoint = resumable_batches, save_training_checkpoint
    atexit.register(lambda: (output_dir / ".test-host-reads.json").write_text(json.dumps(reads)))

train.step_generator, train.diffusion_loss, checkpointing.publish_folder = (
    step_generator,
    diffusion_loss,
    publish_folder,
)
sys.exit(main(argv))
