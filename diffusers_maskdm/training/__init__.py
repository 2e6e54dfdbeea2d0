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
"""The training run of diffusers-maskdm, `run_training`: four phases, each a function in the module of its name,
`setup` → `resume` → `train` → `export` (see README.md's architecture table); `args.py` holds the flags and
`TrainingConfig`, `checkpointing.py` the checkpoints, `data.py`, `streaming.py`, `latents.py`, `model_source.py`,
`presets.py` the rest."""

from pathlib import Path

import torch

# The phases as modules (`training.setup.setup`), so that `training.setup` stays the module of that name.
from . import export, resume, setup, train
from .args import TrainingConfig, config_from_flags, parse_args
from .checkpointing import CheckpointWriteError, find_latest_checkpoint, read_training_state
from .presets import preset_config
from .setup import build_optimizer
from .train import NonFiniteLossError, diffusion_loss, make_diffusion_inputs, step_generator


def run_training(config: TrainingConfig) -> Path:
    """
    Train as `config` says (see `parse_args`) and return the output folder, which then holds the pipeline.

    Raises:
        `ValueError`: for flags that do not fit the model source, the data or the output folder, before any step.
        `NonFiniteLossError`: when too many steps in a row had a non-finite loss (after saving a checkpoint).
        `CheckpointWriteError`: when a checkpoint cannot be written (earlier ones are untouched).
    """
    run = setup.setup(config)
    last_barrier = None
    try:
        state = resume.resume(run)
        train.train(run, state)
        export.export(run, state)
        last_barrier = _wait_for_every_process(run.accelerator)
    finally:
        run.accelerator.end_training()
        run.model = None
        run.accelerator.free_memory()  # the wrapped model goes, and with it the process group (see below)
        del last_barrier
        if run.lock is not None:
            run.lock.close()  # Lets the next run into this folder.
    return run.output_dir


def _wait_for_every_process(accelerator):
    """
    Wait until every process is done, so that none tears down what another still uses; return the barrier's handle.

    Hold the handle until the process group is gone. torch's gloo backend joins its worker threads when the group is
    destroyed (when the DDP-wrapped model goes), while this thread holds the GIL; a worker still freeing the tensors of
    a finished collective needs the GIL, and the process hung at exit (4 two-process runs in 115 on a loaded 2-core
    machine). The barrier's handle keeps the collectives before it alive, so that they are freed on this thread, after
    the workers have stopped.
    """
    if accelerator.num_processes == 1:
        return None
    barrier = torch.distributed.barrier(async_op=True)
    barrier.wait()
    return barrier


__all__ = [
    "CheckpointWriteError",
    "NonFiniteLossError",
    "TrainingConfig",
    "build_optimizer",
    "config_from_flags",
    "diffusion_loss",
    "find_latest_checkpoint",
    "make_diffusion_inputs",
    "parse_args",
    "preset_config",
    "read_training_state",
    "run_training",
    "step_generator",
]
