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
"""The training run of diffusers-maskdm, as four phases: `setup` → `resume` → `train` → `export` (`run_training`).

Each phase is a function in the module of its name (`diffusers_maskdm.training.setup.setup`, ...).

| file | what |
| --- | --- |
| `args.py` | the flags, `TrainingConfig`, `parse_args` and the checks of the flags |
| `setup.py` | `setup`: accelerator, model source, data, model, output folder (locked), optimizer; checks before work |
| `resume.py` | `resume`: from a verified checkpoint of the same model, exactly |
| `train.py` | `train`: the loop, checkpoints, sample grids, FID, the loss guard |
| `export.py` | `export`: the pipeline, its card and grid, the Hub push |
| `loop.py` | the pieces of one step: seeded randomness, noised inputs and masks, the loss, the loss guard |
| `checkpointing.py` | atomic, verified checkpoints in diffusers-format folders |
| `data.py`, `model_source.py`, `optim.py`, `presets.py`, `hardware.py` | data, where the model comes from, AdamW, sizes, CPU |
"""

from .args import TrainingConfig, build_parser, config_from_flags, parse_args, validate_args
from .checkpointing import (
    CheckpointWriteError,
    check_checkpoint,
    find_latest_checkpoint,
    read_training_state,
    register_checkpoint_hooks,
    resolve_resume_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from .data import SeededEpochSampler, TrainImageDataset, build_train_dataloader, build_train_dataset
from .export import check_config_fingerprint, push_pipeline, save_pipeline
from .loop import (
    DiffusionInputs,
    NonFiniteLossError,
    NonFiniteLossGuard,
    build_mask_generator,
    diffusion_loss,
    make_diffusion_inputs,
    step_generator,
)
from .model_source import TransformerSource, new_model_config, resolve_pretrained_transformer
from .optim import build_optimizer, parameter_groups
from .presets import MODEL_PRESETS, patch_size_for_resolution, preset_config
from .resume import TrainingState
from .runner import run_training
from .setup import Run, build_noise_scheduler


__all__ = [
    "MODEL_PRESETS",
    "CheckpointWriteError",
    "DiffusionInputs",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "Run",
    "SeededEpochSampler",
    "TrainImageDataset",
    "TrainingConfig",
    "TrainingState",
    "TransformerSource",
    "build_mask_generator",
    "build_noise_scheduler",
    "build_optimizer",
    "build_parser",
    "build_train_dataloader",
    "build_train_dataset",
    "check_checkpoint",
    "check_config_fingerprint",
    "config_from_flags",
    "diffusion_loss",
    "find_latest_checkpoint",
    "make_diffusion_inputs",
    "new_model_config",
    "parameter_groups",
    "parse_args",
    "patch_size_for_resolution",
    "preset_config",
    "push_pipeline",
    "read_training_state",
    "register_checkpoint_hooks",
    "resolve_pretrained_transformer",
    "resolve_resume_checkpoint",
    "run_training",
    "save_checkpoint",
    "save_pipeline",
    "step_generator",
    "validate_args",
    "write_checkpoint",
]
