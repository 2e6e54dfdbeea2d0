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
"""MaskedDDPMPipeline: sampling, schedulers, seeds, classifier-free guidance and bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_pipeline
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.pipelines import ImagePipelineOutput


SCHEDULERS = [
    DDPMScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler,
    UniPCMultistepScheduler,
    PNDMScheduler,
]

# Combinations the schedulers themselves do not implement (diffusers 0.42).
UNSUPPORTED_PREDICTION_TYPES = {(EulerAncestralDiscreteScheduler, "sample"), (PNDMScheduler, "sample")}


def count_forwards(pipe) -> list[int]:
    """Record the batch size of every transformer call."""
    calls = []
    pipe.transformer.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    return calls


def sample(pipe, steps=3, seed=0, **kwargs) -> np.ndarray:
    return pipe(num_inference_steps=steps, generator=torch.manual_seed(seed), output_type="np", **kwargs).images


def test_output_types_and_tuple(pipe):
    out = pipe(batch_size=2, num_inference_steps=2, generator=torch.manual_seed(0))
    assert isinstance(out, ImagePipelineOutput)
    assert len(out.images) == 2 and all(isinstance(im, PIL.Image.Image) and im.size == (8, 8) for im in out.images)

    images = sample(pipe, batch_size=2)
    assert images.shape == (2, 8, 8, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0

    tensor = pipe(batch_size=2, num_inference_steps=3, generator=torch.manual_seed(0), output_type="pt").images
    assert tensor.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(tensor.permute(0, 2, 3, 1).numpy(), images, atol=1e-6)

    (tuple_images,) = pipe(num_inference_steps=2, output_type="np", return_dict=False)
    assert tuple_images.shape == (1, 8, 8, 3)


def test_grayscale_model_gives_grayscale_images():
    pipe = make_pipeline(in_channels=1)
    assert pipe(num_inference_steps=2).images[0].mode == "L"


@pytest.mark.parametrize("scheduler_class", SCHEDULERS, ids=lambda c: c.__name__)
def test_every_scheduler_runs_its_own_timesteps(pipe, scheduler_class):
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    calls = count_forwards(pipe)
    steps = 4  # PNDM's default Runge-Kutta warm-up needs 4
    images = sample(pipe, steps=steps, batch_size=2)
    assert images.shape == (2, 8, 8, 3) and np.isfinite(images).all()
    # The transformer is called once per timestep of the scheduler in place, not of the one it was saved with.
    pipe.scheduler.set_timesteps(steps)
    assert len(calls) == len(pipe.scheduler.timesteps)
    np.testing.assert_array_equal(images, sample(pipe, steps=steps, batch_size=2))


@pytest.mark.parametrize("scheduler_class", SCHEDULERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_change_the_samples(pipe, scheduler_class, prediction_type):
    baseline = sample(pipe, steps=4)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    if (scheduler_class, prediction_type) in UNSUPPORTED_PREDICTION_TYPES:
        with pytest.raises((ValueError, NotImplementedError), match="sample"):  # the scheduler's own refusal
            sample(pipe, steps=4)
        return
    images = sample(pipe, steps=4)
    assert np.isfinite(images).all()
    if scheduler_class is not DDPMScheduler or prediction_type != "epsilon":
        assert not np.array_equal(images, baseline)


def constant_x0_pipeline(values: torch.Tensor, scheduler):
    """A pipeline whose transformer predicts the same patch values everywhere, whatever its input."""
    pipe = make_pipeline()
    proj = pipe.transformer.proj_out
    torch.nn.init.zeros_(proj.weight)
    with torch.no_grad():
        proj.bias.copy_(values)
    pipe.scheduler = scheduler
    return pipe


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler])
def test_sample_prediction_clip_and_thresholding_are_the_schedulers(scheduler_class):
    # proj_out has 2*2*3 outputs per patch: the model "predicts x0" = these values on every patch.
    values = torch.tensor([0.9, -0.9, 2.0] * 4)
    config = dict(num_train_timesteps=100, prediction_type="sample")

    def final_x0(**scheduler_kwargs):
        pipe = constant_x0_pipeline(values, scheduler_class(**config, **scheduler_kwargs))
        image = pipe(num_inference_steps=5, generator=torch.manual_seed(0), output_type="pt").images
        return image[0, :, 0, 0] * 2 - 1  # back to [-1, 1]: the top-left pixel's three channels

    # The last step returns the predicted x0 itself (then clamped to the image range).
    torch.testing.assert_close(final_x0(clip_sample=False), torch.tensor([0.9, -0.9, 1.0]))
    torch.testing.assert_close(final_x0(clip_sample=True, clip_sample_range=0.5), torch.tensor([0.5, -0.5, 0.5]))
    # Dynamic thresholding divides by the 99.5th percentile of |x0| (2.0, capped by sample_max_value).
    thresholded = final_x0(clip_sample=False, thresholding=True, sample_max_value=2.0)
    torch.testing.assert_close(thresholded, torch.tensor([0.45, -0.45, 1.0]))


@pytest.mark.parametrize("variance_type, channels_used", [("learned_range", 6), ("fixed_small", 3)])
def test_learned_variance_channels_go_only_to_schedulers_that_use_them(variance_type, channels_used):
    pipe = make_pipeline(out_channels=6, num_class_embeds=2)
    pipe.scheduler = DDPMScheduler(num_train_timesteps=100, variance_type=variance_type)
    seen = []
    real_step = pipe.scheduler.step
    pipe.scheduler.step = lambda model_output, *args, **kwargs: (
        seen.append(model_output.shape[1]) or real_step(model_output, *args, **kwargs)
    )
    images = sample(pipe, steps=3, class_labels=[0, 1], guidance_scale=2.0)
    assert images.shape == (2, 8, 8, 3) and np.isfinite(images).all()
    assert seen == [channels_used] * 3


def test_same_seed_same_images_and_different_seed_different_images(pipe):
    a, b, c = (
        sample(pipe, seed=1, batch_size=2),
        sample(pipe, seed=1, batch_size=2),
        sample(pipe, seed=2, batch_size=2),
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, EulerAncestralDiscreteScheduler, DDIMScheduler])
def test_batch_of_four_equals_four_batches_of_one(pipe, scheduler_class):
    # Stochastic schedulers (DDPM, Euler ancestral) draw step noise from the per-image generators too.
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    seeds = [3, 1, 4, 1]
    batch = pipe(
        batch_size=4,
        num_inference_steps=4,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    singles = np.concatenate(
        [
            pipe(num_inference_steps=4, generator=[torch.Generator().manual_seed(s)], output_type="np").images
            for s in seeds
        ]
    )
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    np.testing.assert_allclose(batch[1], batch[3], atol=1e-6)  # same seed, same image


def test_progress_bar_can_be_configured(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    pipe(num_inference_steps=2)
    assert "2/2" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(num_inference_steps=2)
    assert capsys.readouterr().err == ""


# -- class-conditional sampling -------------------------------------------------------------------------------------
def test_class_labels_set_batch_and_change_images(class_pipe):
    images = sample(class_pipe, class_labels=[0, 1, 2])
    assert images.shape[0] == 3
    same_label = sample(class_pipe, class_labels=[0, 0, 0])
    np.testing.assert_array_equal(images[0], same_label[0])
    assert not np.allclose(images[1], same_label[1])
    np.testing.assert_array_equal(sample(class_pipe, class_labels=0, batch_size=3), same_label)
    np.testing.assert_array_equal(sample(class_pipe, class_labels=torch.tensor([0, 1, 2])), images)


def test_no_labels_on_a_class_model_samples_the_null_class(class_pipe):
    calls = []
    class_pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["class_labels"]), with_kwargs=True
    )
    sample(class_pipe, steps=1, batch_size=2)
    assert calls == [None]  # the model maps None to its null class


def test_classifier_free_guidance_batches_cond_and_uncond_in_one_forward(class_pipe):
    calls = count_forwards(class_pipe)
    guided = sample(class_pipe, steps=3, class_labels=[0, 2], guidance_scale=3.0)
    assert calls == [4, 4, 4]

    # Reference: the guidance formula with two separate forwards per step.
    transformer, scheduler = class_pipe.transformer, class_pipe.scheduler
    scheduler.set_timesteps(3)
    x = torch.randn((2, 3, 8, 8), generator=torch.manual_seed(0))
    labels, null = torch.tensor([0, 2]), torch.tensor([3, 3])
    generator = torch.manual_seed(0)
    torch.randn((2, 3, 8, 8), generator=generator)  # the pipeline's initial noise came first
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond, uncond = transformer(x, t, class_labels=labels).sample, transformer(x, t, class_labels=null).sample
            x = scheduler.step(uncond + 3.0 * (cond - uncond), t, x, generator=generator).prev_sample
    reference = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(guided, reference, atol=1e-5)
    assert not np.allclose(guided, sample(class_pipe, steps=3, class_labels=[0, 2]), atol=1e-3)


# -- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.0), "batch_size"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(output_type="tensor"), "output_type"),
        (dict(class_labels=[0]), "class_labels"),
        (dict(guidance_scale=2.0), "guidance_scale"),
        (dict(batch_size=2, generator=[torch.Generator()]), "generator"),
    ],
)
def test_bad_input_names_the_argument(pipe, kwargs, argument):
    kwargs.setdefault("num_inference_steps", 2)
    with pytest.raises(ValueError, match=argument):
        pipe(**kwargs)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(class_labels=[0, 3]), "class_labels"),
        (dict(class_labels=[-1]), "class_labels"),
        (dict(class_labels=[0.5]), "class_labels"),
        (dict(class_labels=[0, 1], batch_size=3), "batch_size"),
        (dict(guidance_scale=2.0), "guidance_scale"),
        (dict(class_labels=[0, 1], generator=[torch.Generator()] * 3), "generator"),
    ],
)
def test_bad_class_input_names_the_argument(class_pipe, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        class_pipe(num_inference_steps=2, **kwargs)


def test_pndm_warm_up_needs_four_steps_or_skip_prk(pipe):
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="num_inference_steps.*skip_prk_steps=True"):
        pipe(num_inference_steps=3)
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)
    assert np.isfinite(sample(pipe, steps=1)).all()


# -- latents, eta, callbacks ------------------------------------------------------------------------------------------
def test_latents_reproduce_a_run_given_the_same_noise(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    noise = torch.randn((2, 3, 8, 8), generator=torch.manual_seed(0))
    from_generator = sample(pipe, batch_size=2)  # DDIM draws the same noise from the same seed, then nothing more
    from_latents = pipe(num_inference_steps=3, latents=noise.clone(), output_type="np", batch_size=2).images
    np.testing.assert_array_equal(from_latents, from_generator)
    other = pipe(num_inference_steps=3, latents=torch.randn(2, 3, 8, 8), output_type="np", batch_size=2).images
    assert not np.allclose(other, from_latents, atol=1e-3)

    # A stochastic scheduler: the same noise and the same step generator give the same images.
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    runs = [sample(pipe, seed=5, batch_size=2, latents=noise) for _ in range(2)]
    np.testing.assert_array_equal(*runs)


def test_latents_of_the_wrong_shape_name_the_argument(pipe):
    with pytest.raises(ValueError, match=r"`latents` must be a tensor of shape \(2, 3, 8, 8\)"):
        pipe(batch_size=2, num_inference_steps=2, latents=torch.randn(1, 3, 8, 8))


def test_eta_reaches_ddim_and_is_ignored_by_others(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    deterministic = sample(pipe, steps=4, eta=0.0)
    assert not np.allclose(sample(pipe, steps=4, eta=1.0), deterministic, atol=1e-4)
    np.testing.assert_array_equal(sample(pipe, steps=4, eta=1.0), sample(pipe, steps=4, eta=1.0))  # seeded
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)  # its step takes no eta, no generator
    np.testing.assert_array_equal(sample(pipe, steps=4, eta=1.0), sample(pipe, steps=4))


def test_callback_sees_every_step_and_can_change_latents(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    seen = []

    def record(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), tuple(callback_kwargs["latents"].shape)))
        return {}

    images = sample(pipe, steps=4, batch_size=2, callback_on_step_end=record)
    pipe.scheduler.set_timesteps(4)
    assert seen == [(i, int(t), (2, 3, 8, 8)) for i, t in enumerate(pipe.scheduler.timesteps)]
    np.testing.assert_array_equal(images, sample(pipe, steps=4, batch_size=2))  # a callback that returns {}

    def zero_after_last_step(pipeline, step, timestep, callback_kwargs):
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if step == 3 else {}

    grey = sample(pipe, steps=4, callback_on_step_end=zero_after_last_step)
    np.testing.assert_allclose(grey, 0.5)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        pipe(num_inference_steps=2, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_diffusers_pipeline_callback_objects(pipe):
    from diffusers.callbacks import PipelineCallback

    class CountSteps(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            self.steps = getattr(self, "steps", 0) + 1
            return callback_kwargs

    counter = CountSteps()
    sample(pipe, steps=3, callback_on_step_end=counter)
    assert counter.steps == 3


# -- class names ------------------------------------------------------------------------------------------------------
def test_id2label_and_get_label_ids(class_pipe):
    pipe = type(class_pipe)(
        class_pipe.transformer, class_pipe.scheduler, id2label={0: "cat", 1: "dog, puppy", 2: "owl"}
    )
    assert pipe.get_label_ids(["puppy", "owl", "dog"]) == [1, 2, 1] and pipe.get_label_ids("cat") == [0]
    with pytest.raises(ValueError, match=r"\['fox'\] not found.*'cat'"):
        pipe.get_label_ids(["fox"])
    images = sample(pipe, class_labels=pipe.get_label_ids(["cat", "owl"]))
    np.testing.assert_array_equal(images, sample(class_pipe, class_labels=[0, 2]))
    with pytest.raises(ValueError, match="`id2label` has class ids"):
        type(class_pipe)(class_pipe.transformer, class_pipe.scheduler, id2label={3: "bear"})
