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
"""Counted compute of a training step, so runs with different mask rates can be compared at equal FLOPs."""

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from .losses import masked_mse_loss
from .masking import MaskGenerator


# torch counts the fused attention kernels of CUDA but not the CPU one, which its CPU build calls for every
# `scaled_dot_product_attention`: without these, attention would be free on the CPU and counts would depend on the
# device. The same formulas as torch's CUDA kernels, so a count is the same everywhere.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)
    ),
}


def training_step_flops(model, batch_size: int, mask_generator: MaskGenerator | None = None) -> int:
    """
    Counts the floating-point operations of one training step (forward and backward) of a `MaskedDiTModel`.

    torch's `FlopCounterMode` counts a real step on random inputs (matrix products and attention, the same formula on
    every device), so the count follows the tokens computed: at a 90 % mask a step costs less than a tenth of a full
    one. The optimizer update (the same for every mask rate) is not counted; the step's gradients are cleared.

    Args:
        model (`MaskedDiTModel`): the model to measure; it is not changed.
        batch_size (`int`): the per-step batch.
        mask_generator (`MaskGenerator`, *optional*): the masks of a masked pre-training step; `None` for full images.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    config, device = model.config, model.device
    size = config.sample_size
    sample = torch.randn(batch_size, config.in_channels, size, size, device=device).to(model.dtype)
    timesteps = torch.zeros(batch_size, dtype=torch.long, device=device)
    mask = mask_generator(batch_size, model.grid_size, device=device) if mask_generator else None
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        prediction = model(sample, timesteps, mask=mask).sample
        masked_mse_loss(prediction, torch.zeros_like(prediction), mask, config.patch_size).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops()
