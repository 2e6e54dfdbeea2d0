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
"""MaskedDDPMPipeline with a VAE (latent space): sampling, decoding, saving, loading and the Hub."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_pipeline
from diffusers import AutoencoderKL
from huggingface_hub import ModelCard
from vae_testing import make_tiny_vae

from diffusers_maskdm.pipelines import MaskedDDPMPipeline


def make_latent_pipeline(**vae_overrides) -> MaskedDDPMPipeline:
    """A 16x16x4 latent transformer with the tiny 2x VAE: 32x32 px images."""
    pipe = make_pipeline(sample_size=16, in_channels=4)
    return MaskedDDPMPipeline(pipe.transformer, pipe.scheduler, vae=make_tiny_vae(**vae_overrides))


def sample(pipe, seed=0, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    options = dict(batch_size=2, num_inference_steps=3, generator=torch.manual_seed(seed), output_type="np")
    return pipe(**{**options, **kwargs}).images


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_latent_pipeline_returns_images_of_the_pixel_size(output_type):
    images = sample(make_latent_pipeline(), output_type=output_type)
    if output_type == "pil":
        assert [image.size for image in images] == [(32, 32)] * 2
    else:
        shape = (2, 3, 32, 32) if output_type == "pt" else (2, 32, 32, 3)
        assert tuple(images.shape) == shape and 0 <= images.min() and images.max() <= 1


@pytest.mark.parametrize("shift_factor", [None, 0.3])
def test_latents_are_unscaled_and_shifted_before_decoding(shift_factor):
    pipe = make_latent_pipeline(scaling_factor=0.5, shift_factor=shift_factor)
    final, decoded = [], []
    decode = pipe.vae.decode
    pipe.vae.decode = lambda z, **kw: decoded.append(z) or decode(z, **kw)

    def keep_latents(pipe, step, timestep, tensors):
        final[:] = [tensors["latents"]]
        return tensors

    images = sample(pipe, output_type="pt", callback_on_step_end=keep_latents)
    torch.testing.assert_close(decoded[0], final[0] / 0.5 + (shift_factor or 0))
    torch.testing.assert_close(images, (decode(decoded[0]).sample / 2 + 0.5).clamp(0, 1))


def test_output_type_latent_returns_the_transformers_latents_undecoded():
    # As diffusers' pipelines do (their `test_callback_inputs` samples with `output_type="latent"`).
    pipe = make_latent_pipeline()
    final, decoded = [], []
    pipe.vae.decode = lambda z, **kw: decoded.append(z)

    def keep_latents(pipe, step, timestep, tensors):
        final[:] = [tensors["latents"]]
        return tensors

    latents = sample(pipe, output_type="latent", callback_on_step_end=keep_latents)
    assert not decoded and latents.shape[1] == pipe.transformer.config.in_channels
    torch.testing.assert_close(latents, final[0])


def test_a_vae_of_other_latent_channels_is_refused():
    pipe = make_pipeline(sample_size=16, in_channels=4)
    with pytest.raises(ValueError, match="`vae` makes latents of 8 channels.*takes 4"):
        MaskedDDPMPipeline(pipe.transformer, pipe.scheduler, vae=make_tiny_vae(latent_channels=8))


def test_a_pixel_folder_saved_without_a_vae_entry_loads_unchanged(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index_path = tmp_path / "model_index.json"
    index = json.loads(index_path.read_text())
    # The model_index.json of a pipeline saved before the `vae` component existed.
    old_index = {key: index[key] for key in ("_class_name", "_diffusers_version", "scheduler", "transformer")}
    index_path.write_text(json.dumps(old_index))
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    assert loaded.vae is None and not (tmp_path / "vae").exists()
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_save_load_round_trip_with_a_vae(tmp_path):
    pipe = make_latent_pipeline(scaling_factor=0.5, shift_factor=0.1)
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderKL"]
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.vae, AutoencoderKL) and loaded.vae.config.shift_factor == 0.1
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_push_and_load_by_repo_id_with_a_vae(hub):
    pipe = make_latent_pipeline()
    pipe.push_to_hub("tiny-latent", sample_grid=PIL.Image.new("RGB", (32, 32)))
    files = hub.files("test-user/tiny-latent")
    assert {"vae/config.json", "vae/diffusion_pytorch_model.safetensors"} <= set(files)
    loaded = MaskedDDPMPipeline.from_pretrained("test-user/tiny-latent")
    np.testing.assert_array_equal(sample(loaded), sample(pipe))
    card = ModelCard.load("test-user/tiny-latent").text
    assert (
        "latent-space diffusion transformer" in card and "decoded to images by the pipeline's `AutoencoderKL`" in card
    )
    assert "pixel" not in card
