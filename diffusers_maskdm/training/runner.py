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
"""`run_training`: a training run as its four phases, `setup` → `resume` → `train` → `export`."""

from pathlib import Path

from .args import TrainingConfig
from .export import export
from .resume import resume
from .setup import setup
from .train import train


def run_training(config: TrainingConfig) -> Path:
    """
    Train as `config` says (see `parse_args`) and return the output folder, which then holds the pipeline.

    Raises:
        `ValueError`: for flags that do not fit the model source, the data or the output folder, before any step.
        `NonFiniteLossError`: when too many steps in a row had a non-finite loss (after saving a checkpoint).
        `CheckpointWriteError`: when a checkpoint cannot be written (earlier ones are untouched).
    """
    run = setup(config)
    try:
        state = resume(run)
        train(run, state)
        export(run, state)
    finally:
        run.accelerator.end_training()
        if run.lock is not None:
            run.lock.close()  # Lets the next run into this folder.
    return run.output_dir
