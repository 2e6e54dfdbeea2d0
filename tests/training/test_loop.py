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
"""The pieces of a training step: seeded randomness, inputs per prediction type, masks, label dropout, loss guard."""

from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from diffusers import DDPMScheduler

from diffusers_maskdm import MaskedDiTModel, masked_mse_loss
from diffusers_maskdm.masking import visible_indices
from diffusers_maskdm.training import diffusion_loss, make_diffusion_inputs, step_generator
from diffusers_maskdm.training.resume import TrainingState
from diffusers_maskdm.training.setup import build_mask_generator
from diffusers_maskdm.training.train import _Interval, _nonfinite_error


def test_step_generator_is_a_function_of_its_arguments():
    draw = lambda *args: torch.rand(4, generator=step_generator(0, *args))  # noqa: E731
    assert torch.equal(draw(0, 5, 1), draw(0, 5, 1))
    for other in [(1, 5, 1), (0, 6, 1), (0, 5, 0)]:
        assert not torch.equal(draw(0, 5, 1), draw(*other))
    assert not torch.equal(torch.rand(4, generator=step_generator(1, 0, 5)), draw(0, 5, 0))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_inputs_and_targets_for_each_prediction_type(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction_type)
    clean = torch.rand(4, 3, 8, 8) * 2 - 1
    inputs = make_diffusion_inputs(clean, scheduler, step_generator(0, 0, 3))
    again = make_diffusion_inputs(clean, scheduler, step_generator(0, 0, 3))
    assert torch.equal(inputs.noisy, again.noisy) and torch.equal(inputs.timesteps, again.timesteps)
    assert inputs.mask is None and inputs.class_labels is None
    # The noise is the first draw of the generator: recompute it to check the target.
    noise = torch.randn(clean.shape, generator=step_generator(0, 0, 3))
    assert torch.allclose(inputs.noisy, scheduler.add_noise(clean, noise, inputs.timesteps))
    expected = {
        "epsilon": noise,
        "v_prediction": scheduler.get_velocity(clean, noise, inputs.timesteps),
        "sample": clean,
    }[prediction_type]
    assert torch.allclose(inputs.target, expected)


def test_masks_and_label_dropout():
    scheduler = DDPMScheduler(num_train_timesteps=100)
    mask_generator = build_mask_generator("block", 0.75, block_size=2)
    assert build_mask_generator("block", 0.0) is None
    labels = torch.arange(64) % 5
    inputs = make_diffusion_inputs(
        torch.zeros(64, 3, 16, 16), scheduler, step_generator(0, 0, 0), mask_generator, 8, labels, 0.5, 5
    )
    assert inputs.mask.shape == (64, 64) and (inputs.mask.sum(dim=1) == 48).all()
    dropped = inputs.class_labels == 5
    assert 10 < int(dropped.sum()) < 54  # about half go to the null class ...
    assert torch.equal(inputs.class_labels[~dropped], labels[~dropped])  # ... the others keep their label
    kept = make_diffusion_inputs(torch.zeros(8, 3, 16, 16), scheduler, step_generator(0, 0, 0), None, 8, labels[:8])
    assert torch.equal(kept.class_labels, labels[:8])


def test_diffusion_loss_is_the_masked_mse_and_training_lowers_it():
    torch.manual_seed(0)
    model = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)
    scheduler = DDPMScheduler(num_train_timesteps=100)
    clean = torch.rand(2, 3, 8, 8) * 2 - 1
    mask_generator = build_mask_generator("patch", 0.5)
    fixed = make_diffusion_inputs(clean, scheduler, step_generator(9, 0, 0), mask_generator, 4)
    prediction = model(fixed.noisy, fixed.timesteps, mask=fixed.mask).sample
    assert torch.allclose(diffusion_loss(model, fixed), masked_mse_loss(prediction, fixed.target, fixed.mask, 2))

    before = diffusion_loss(model, fixed).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        loss = diffusion_loss(
            model, make_diffusion_inputs(clean, scheduler, step_generator(0, 0, step), mask_generator, 4)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert diffusion_loss(model, fixed).item() < 0.8 * before


def test_an_interval_sums_on_the_device_and_is_read_once():
    # Steps between logging steps add to device tensors; the loss and gradient norm are the means of the updated steps.
    nan, inf = float("nan"), float("inf")
    interval = _Interval(torch.device("cpu"), step=10, in_a_row=1)
    steps = [(nan, 1.0, 1), (1.0, 2.0, 0), (nan, nan, 1), (3.0, 4.0, 0), (inf, 1.0, 1), (nan, 0, 1)]
    for loss, norm, skipped in steps:
        interval.add(torch.tensor(loss), torch.tensor(norm), torch.tensor(float(skipped)))
        interval.images += 4
    loss, grad_norm, skipped, in_a_row, steps, seconds, images = interval.read(16)
    assert (loss, grad_norm, skipped, in_a_row, steps, images) == (2.0, 3.0, 4, 2, 6, 24) and seconds > 0
    interval.add(torch.tensor(5.0), torch.tensor(1.0), torch.tensor(0.0))  # the next interval starts afresh
    assert interval.read(17)[:5] == (5.0, 1.0, 0, 0, 1)


def test_the_stop_message_names_the_steps_and_the_likely_causes():
    config = SimpleNamespace(max_consecutive_nonfinite_steps=3, learning_rate=1e-3)
    run = SimpleNamespace(config=config, accelerator=SimpleNamespace(mixed_precision="fp16"))
    state = TrainingState(global_step=5, nonfinite_total_skipped=4, nonfinite_consecutive=3)
    message = str(_nonfinite_error(run, state, "out/checkpoint-5"))
    assert "Stopping at step 5" in message and "steps 3 to 5" in message
    assert "--mixed_precision=fp16" in message and "--learning_rate=0.001" in message and "out/checkpoint-5" in message


def test_a_step_reads_nothing_back_for_its_mask():
    # The visible patches come from the generator's fixed count: the same as the mask's, with no device read.
    inputs = make_diffusion_inputs(
        torch.zeros(2, 3, 8, 8), DDPMScheduler(), step_generator(0, 0, 0), build_mask_generator("patch", 0.5), 4
    )
    assert torch.equal(inputs.ids_keep, visible_indices(inputs.mask))
    with patch.object(torch.Tensor, "tolist", side_effect=AssertionError("a device read")):
        visible_indices(inputs.mask, 8)
