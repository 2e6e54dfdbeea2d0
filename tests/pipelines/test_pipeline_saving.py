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
"""Saving and loading MaskedDDPMPipeline from local folders, the way diffusers users expect."""

import inspect
import json
import sys

import numpy as np
import pytest
import torch
from conftest import make_pipeline, save_tiny_ddpm_pipeline
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils import dynamic_modules_utils

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.pipelines import MaskedDDPMPipeline


def sample(pipe, seed=0) -> np.ndarray:
    return pipe(batch_size=2, num_inference_steps=3, generator=torch.manual_seed(seed), output_type="np").images


def test_save_load_gives_identical_images(pipe, tmp_path):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    # The module paths written here are public from now on (FACTS): a move would break every saved pipeline.
    assert index["_class_name"] == "MaskedDDPMPipeline"
    assert index["transformer"] == ["diffusers_maskdm.models.masked_dit", "MaskedDiTModel"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.py"))

    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, DDIMScheduler)
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_torch_dtype(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.transformer.dtype == torch.bfloat16
    images = sample(loaded)
    assert images.dtype == np.float32 and np.isfinite(images).all()
    assert np.abs(images - sample(pipe)).mean() < 0.05  # same model, bf16 rounding only


def test_use_safetensors_and_variant(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    ema = make_pipeline(seed=1)  # different weights saved as the "ema" variant in the same folder
    ema.save_pretrained(tmp_path, variant="ema")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.ema.safetensors").is_file()

    default = MaskedDDPMPipeline.from_pretrained(tmp_path, use_safetensors=True)
    variant = MaskedDDPMPipeline.from_pretrained(tmp_path, variant="ema", use_safetensors=True)
    for loaded in (default, variant):
        loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(default), sample(pipe))
    np.testing.assert_array_equal(sample(variant), sample(ema))
    with pytest.raises(ValueError, match="variant"):
        MaskedDDPMPipeline.from_pretrained(tmp_path, variant="fp16")


def test_transformer_alone_from_the_pipeline_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    transformer = MaskedDiTModel.from_pretrained(tmp_path, subfolder="transformer")
    for name, tensor in pipe.transformer.state_dict().items():
        torch.testing.assert_close(transformer.state_dict()[name], tensor, rtol=0, atol=0)


def test_class_conditional_round_trip(class_pipe, tmp_path):
    class_pipe.save_pretrained(tmp_path)
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    kwargs = dict(class_labels=[0, 2], guidance_scale=2.0, num_inference_steps=2, output_type="np")
    np.testing.assert_array_equal(
        loaded(generator=torch.manual_seed(0), **kwargs).images,
        class_pipe(generator=torch.manual_seed(0), **kwargs).images,
    )


def test_generic_diffusers_entry_point(pipe, tmp_path, monkeypatch):
    """What works with diffusers 0.42.1 for a pipeline class that lives outside diffusers (docs/hub.md)."""
    pipe.save_pretrained(tmp_path / "pipe")

    # `DiffusionPipeline.from_pretrained(folder)` looks `_class_name` up inside the diffusers package only.
    with pytest.raises(AttributeError, match="MaskedDDPMPipeline"):
        DiffusionPipeline.from_pretrained(tmp_path / "pipe")

    # diffusers' documented route for such pipelines: `custom_pipeline=<file>`, which copies that file into its
    # module cache and imports it, hence `trust_remote_code=True` (the file is the installed package's own).
    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    loaded = DiffusionPipeline.from_pretrained(
        tmp_path / "pipe", custom_pipeline=inspect.getfile(MaskedDDPMPipeline), trust_remote_code=True
    )
    assert type(loaded).__name__ == "MaskedDDPMPipeline"
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_loading_a_folder_that_is_not_a_maskdm_pipeline_says_what_it_found(pipe, tmp_path):
    save_tiny_ddpm_pipeline(tmp_path / "ddpm")
    with pytest.raises(ValueError, match=r"'DDPMPipeline'.*\['scheduler', 'unet'\]"):
        MaskedDDPMPipeline.from_pretrained(tmp_path / "ddpm")

    pipe.transformer.save_pretrained(tmp_path / "model_only")
    with pytest.raises(ValueError, match="no model_index.json.*MaskedDiTModel.from_pretrained"):
        MaskedDDPMPipeline.from_pretrained(tmp_path / "model_only")

    pipe.save_pretrained(tmp_path / "broken")
    index = json.loads((tmp_path / "broken" / "model_index.json").read_text())
    del index["transformer"]
    (tmp_path / "broken" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="`transformer` component is None"):
        MaskedDDPMPipeline.from_pretrained(tmp_path / "broken")

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no model_index.json \(found \[\]\)"):
        MaskedDDPMPipeline.from_pretrained(tmp_path / "empty")


def test_id2label_round_trip(class_pipe, tmp_path):
    named = MaskedDDPMPipeline(class_pipe.transformer, class_pipe.scheduler, id2label={0: "cat", 1: "dog, puppy"})
    named.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["id2label"] == {"0": "cat", "1": "dog, puppy"}
    loaded = MaskedDDPMPipeline.from_pretrained(tmp_path)
    assert loaded.get_label_ids(["puppy", "cat"]) == [1, 0] and loaded.config.id2label == {0: "cat", 1: "dog, puppy"}

    # A pipeline without class names saves no `id2label` (folders stay as before) and has none after loading.
    class_pipe.save_pretrained(tmp_path / "plain")
    assert "id2label" not in json.loads((tmp_path / "plain" / "model_index.json").read_text())
    assert MaskedDDPMPipeline.from_pretrained(tmp_path / "plain").labels == {}
