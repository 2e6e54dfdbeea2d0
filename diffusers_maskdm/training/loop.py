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
"""The pieces of one training step: seeded randomness, noised inputs and masks, the loss, and the loss guard.

Every random draw of a step (noise, timesteps, masks, class-label dropout) comes from a generator seeded by
`(seed, process, global step, micro-batch)`, not from a global random state. A run resumed from a checkpoint
therefore draws exactly what the uninterrupted run drew, without saving any generator state.
"""

import logging
import os
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from ..losses import masked_mse_loss
from ..masking import MaskGenerator
from .data import derive_seed


logger = logging.getLogger(__name__)

# Keys the training randomness apart from the data's streams (shuffle, per-sample augmentation) of the same seed.
_TRAINING_STREAM = 0x5452


def step_generator(
    seed: int, process_index: int, global_step: int, micro_step: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """
    The generator of all random draws of one micro-batch: a pure function of its arguments.

    Args:
        seed (`int`): the run's `--seed`.
        process_index (`int`): the process (rank), so that processes draw different noise.
        global_step (`int`): the optimizer step being computed (0 for the first).
        micro_step (`int`, *optional*, defaults to 0): the micro-batch within gradient accumulation.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`): where to draw.
    """
    return torch.Generator(device=device).manual_seed(
        derive_seed(seed, _TRAINING_STREAM, process_index, global_step, micro_step)
    )


def build_mask_generator(
    mask_type: str, mask_rate: float, block_size: int | None = None, crop_size: int | None = None, **kwargs
) -> MaskGenerator | None:
    """The `MaskGenerator` of the mask flags, or `None` for `mask_rate == 0` (fine-tuning on full images)."""
    if not mask_rate:
        return None
    block_size = 2 if block_size is None else block_size
    return MaskGenerator(mask_type, mask_rate=mask_rate, block_size=block_size, crop_size=crop_size, **kwargs)


@dataclass
class DiffusionInputs:
    """What the model sees in one step and what it must predict.

    Attributes:
        noisy (`torch.Tensor`): the noised images, (B, C, H, W).
        timesteps (`torch.LongTensor`): (B,) diffusion steps.
        target (`torch.Tensor`): the regression target for the scheduler's `prediction_type`, (B, C, H, W).
        mask (`torch.BoolTensor` or `None`): (B, num_patches) patch mask, `True` = masked (dropped).
        class_labels (`torch.LongTensor` or `None`): (B,) labels, some replaced by the null class (label dropout).
    """

    noisy: torch.Tensor
    timesteps: torch.LongTensor
    target: torch.Tensor
    mask: torch.BoolTensor | None = None
    class_labels: torch.LongTensor | None = None


def make_diffusion_inputs(
    clean: torch.Tensor,
    noise_scheduler: DDPMScheduler,
    generator: torch.Generator,
    mask_generator: MaskGenerator | None = None,
    grid_size: int | None = None,
    class_labels: torch.LongTensor | None = None,
    class_dropout_prob: float = 0.0,
    null_class_label: int | None = None,
) -> DiffusionInputs:
    """
    Draw noise, timesteps, a mask and label dropout for a batch of clean images, all from `generator`.

    Args:
        clean (`torch.Tensor`): (B, C, H, W) images in [-1, 1].
        noise_scheduler (`DDPMScheduler`): gives `add_noise`, `get_velocity`, `num_train_timesteps` and the
            `prediction_type` (`"epsilon"`, `"v_prediction"` or `"sample"`).
        generator (`torch.Generator`): the source of every random draw (see `step_generator`).
        mask_generator (`MaskGenerator`, *optional*): draws the patch masks of masked pre-training.
        grid_size (`int`, *optional*): the model's patch grid side; needed with `mask_generator`.
        class_labels (`torch.LongTensor`, *optional*): (B,) labels of a class-conditional model.
        class_dropout_prob (`float`, *optional*, defaults to 0.0): chance of replacing a label by the null class,
            which teaches the unconditional model used by classifier-free guidance.
        null_class_label (`int`, *optional*): the null class (the model's `num_class_embeds`).
    """
    batch_size, device = clean.shape[0], clean.device
    noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=clean.dtype)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator, device=generator.device
    ).to(device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)

    prediction_type = noise_scheduler.config.prediction_type  # one of three, checked by `build_noise_scheduler`
    if prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(clean, noise, timesteps)
    else:
        target = clean if prediction_type == "sample" else noise

    mask = None
    if mask_generator is not None:
        mask = mask_generator(batch_size, grid_size, generator=generator, device=device)

    if class_labels is not None and class_dropout_prob > 0:
        drop = torch.rand(batch_size, generator=generator, device=generator.device).to(device) < class_dropout_prob
        class_labels = torch.where(drop, torch.full_like(class_labels, null_class_label), class_labels)
    return DiffusionInputs(noisy, timesteps, target, mask, class_labels)


def diffusion_loss(model: nn.Module, inputs: DiffusionInputs) -> torch.Tensor:
    """The MSE of `model` (wrapped by accelerate or not) on `inputs` over the visible patches."""
    prediction = model(inputs.noisy, inputs.timesteps, class_labels=inputs.class_labels, mask=inputs.mask).sample
    patch_size = getattr(model, "module", model).config.patch_size
    return masked_mse_loss(prediction, inputs.target, inputs.mask, patch_size)  # trusts the mask the model checked


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss was not finite for too many steps in a row."""


class NonFiniteLossGuard:
    r"""
    Counts steps whose loss (or gradient norm) is NaN or infinite, which the loop skips, and says when to give up.
    A skipped step changes no weight but still counts (data and learning-rate schedule move on).

    Args:
        max_consecutive (`int`, *optional*, defaults to 10): stop after this many skipped steps in a row.
        learning_rate (`float`, *optional*), mixed_precision (`str`, *optional*): named in the stop message.
    """

    def __init__(
        self, max_consecutive: int = 10, learning_rate: float | None = None, mixed_precision: str | None = None
    ):
        self.max_consecutive, self.learning_rate, self.mixed_precision = (
            max_consecutive,
            learning_rate,
            mixed_precision,
        )
        self.load_state_dict({})

    def record(self, step: int, finite: bool, what: str = "loss") -> bool:
        """Record (and warn of) the outcome of 1-based step `step`; `True` means stop: save, raise `stop_error(step)`."""
        if finite:
            self.consecutive, self.first_step_of_run = 0, None
            return False
        self.total_skipped += 1
        self.consecutive += 1
        self.first_step_of_run = self.first_step_of_run or step
        logger.warning(
            "Step %d: the %s is not finite (NaN or inf); the step was skipped (%d in a row, %d in total, stop after %d "
            "in a row).",
            step,
            what,
            self.consecutive,
            self.total_skipped,
            self.max_consecutive,
        )
        return self.consecutive >= self.max_consecutive

    def stop_error(self, step: int, checkpoint: str | os.PathLike | None = None) -> NonFiniteLossError:
        """The error to raise when `record` says stop: names the steps, likely causes and where the state is."""
        causes = [f"a learning rate too high for this model (--learning_rate={self.learning_rate})"]
        if self.mixed_precision == "fp16":
            causes.insert(0, "float16 overflow (--mixed_precision=fp16: try bf16, or no)")
        elif self.mixed_precision == "bf16":
            causes.append("low precision (--mixed_precision=bf16: try no)")
        causes.append("broken training images (NaN pixels)")
        saved = (
            f" The last good weights were saved in {checkpoint}: fix the cause, then resume with "
            "--resume_from_checkpoint latest."
            if checkpoint
            else ""
        )
        return NonFiniteLossError(
            f"Stopping at step {step}: the loss was not finite for {self.consecutive} steps in a row (steps "
            f"{self.first_step_of_run} to {step}). Likely causes: {'; '.join(causes)}.{saved}"
        )

    def state_dict(self) -> dict[str, int | None]:
        """Counters to save in a checkpoint."""
        return {
            "nonfinite_total_skipped": self.total_skipped,
            "nonfinite_consecutive": self.consecutive,
            "nonfinite_first_step_of_run": self.first_step_of_run,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the counters of `state_dict` (`{}`: none yet)."""
        self.total_skipped = int(state.get("nonfinite_total_skipped", 0))
        self.consecutive = int(state.get("nonfinite_consecutive", 0))
        self.first_step_of_run = state.get("nonfinite_first_step_of_run")
