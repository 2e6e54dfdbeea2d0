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

import logging
from types import SimpleNamespace

import pytest
import torch
from accelerate import PartialState
from diffusers import DDPMScheduler

from diffusers_maskdm import MaskedDiTModel, masked_mse_loss
from diffusers_maskdm.training import diffusion_loss, make_diffusion_inputs, step_generator
from diffusers_maskdm.training.resume import TrainingState
from diffusers_maskdm.training.setup import build_mask_generator
from diffusers_maskdm.training.train import _count_nonfinite, _nonfinite_error


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


def test_loss_guard_skips_warns_and_stops(caplog):
    PartialState(cpu=True)  # the training modules log through accelerate
    config = SimpleNamespace(max_consecutive_nonfinite_steps=3, learning_rate=1e-3)
    run = SimpleNamespace(config=config, accelerator=SimpleNamespace(mixed_precision="fp16"))
    state = TrainingState(global_step=1)
    with caplog.at_level(logging.WARNING):
        assert _count_nonfinite(run, state, "loss") is False
    assert "Step 1: the loss is not finite" in caplog.text
    state.nonfinite_consecutive, state.nonfinite_first_step_of_run = 0, None  # a finite step 2
    stops = []
    for step in (3, 4, 5):
        state.global_step = step
        stops.append(_count_nonfinite(run, state, "loss"))
    assert stops == [False, False, True]
    message = str(_nonfinite_error(run, state, "out/checkpoint-5"))
    assert "Stopping at step 5" in message and "steps 3 to 5" in message
    assert "--mixed_precision=fp16" in message and "--learning_rate=0.001" in message and "out/checkpoint-5" in message
    assert (state.nonfinite_total_skipped, state.nonfinite_consecutive, state.nonfinite_first_step_of_run) == (4, 3, 3)


def test_a_step_checks_its_mask_once(monkeypatch):
    # Each check of a mask's row counts is a device sync on a GPU: the model checks it (in `visible_indices`, with the
    # read that dropping tokens needs), the loss trusts it.
    import diffusers_maskdm.models.masked_dit as masked_dit

    calls = []
    original = masked_dit.visible_indices
    monkeypatch.setattr(masked_dit, "visible_indices", lambda mask: calls.append(1) or original(mask))
    model = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)
    inputs = make_diffusion_inputs(
        torch.zeros(2, 3, 8, 8), DDPMScheduler(), step_generator(0, 0, 0), build_mask_generator("patch", 0.5), 4
    )
    diffusion_loss(model, inputs).backward()
    assert len(calls) == 1
