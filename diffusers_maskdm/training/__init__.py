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
"""Training pieces of diffusers-maskdm: data loading, the loop's building blocks and checkpoint hooks."""

from .args import build_noise_scheduler, build_parser, parse_args, validate_args
from .checkpointing import (
    CheckpointWriteError,
    check_checkpoint,
    check_output_dir,
    find_latest_checkpoint,
    load_checkpoint,
    register_checkpoint_hooks,
    resolve_resume_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from .data import SeededEpochSampler, TrainImageDataset, build_train_dataloader, build_train_dataset
from .export import push_pipeline, save_pipeline
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
from .runner import run_training


__all__ = [
    "MODEL_PRESETS",
    "CheckpointWriteError",
    "DiffusionInputs",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "SeededEpochSampler",
    "TrainImageDataset",
    "TransformerSource",
    "build_mask_generator",
    "build_noise_scheduler",
    "build_optimizer",
    "build_parser",
    "build_train_dataloader",
    "build_train_dataset",
    "check_checkpoint",
    "check_output_dir",
    "diffusion_loss",
    "find_latest_checkpoint",
    "load_checkpoint",
    "make_diffusion_inputs",
    "new_model_config",
    "parameter_groups",
    "parse_args",
    "patch_size_for_resolution",
    "preset_config",
    "push_pipeline",
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
