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
"""MaskedDDPMPipeline and the Hub, end to end against the loopback Hub server (tests/hub_server.py)."""

import inspect
import re

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_pipeline, save_tiny_ddpm_pipeline
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard, upload_folder
from huggingface_hub.errors import RepositoryNotFoundError

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.hub import download_pipeline_folder, save_model_card, upload_pipeline_folder
from diffusers_maskdm.pipelines import MaskedDDPMPipeline


TRAINING = {"stage": "pretrain", "mask_kind": "patch", "mask_rate": 0.9, "max_train_steps": 10, "data": "twemoji"}


def sample(pipe, seed=0) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=2, num_inference_steps=3, generator=torch.manual_seed(seed), output_type="np").images


def python_block(markdown: str) -> str:
    (block,) = re.findall(r"```python\n(.*?)```", markdown, flags=re.S)
    return block


def test_push_then_load_by_repo_id_gives_identical_images(pipe, hub):
    url = pipe.push_to_hub("tiny-maskdm")
    assert "test-user/tiny-maskdm" in url
    files = hub.files("test-user/tiny-maskdm")
    assert {"model_index.json", "transformer/diffusion_pytorch_model.safetensors", "README.md"} <= set(files)
    assert not [f for f in files if f.endswith((".py", ".bin"))]

    loaded = MaskedDDPMPipeline.from_pretrained("test-user/tiny-maskdm")
    np.testing.assert_array_equal(sample(loaded), sample(pipe))
    # Loading fetched configs and weights only.
    fetched = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    assert fetched and all(p.endswith((".json", ".safetensors")) for p in fetched)


def test_transformer_from_repo_subfolder(pipe, hub):
    pipe.push_to_hub("tiny-maskdm")
    transformer = MaskedDiTModel.from_pretrained("test-user/tiny-maskdm", subfolder="transformer")
    for name, tensor in pipe.transformer.state_dict().items():
        torch.testing.assert_close(transformer.state_dict()[name], tensor, rtol=0, atol=0)


def test_revision_cache_dir_and_local_files_only(hub, tmp_path):
    first, second = make_pipeline(seed=0), make_pipeline(seed=1)
    first.push_to_hub("tiny-maskdm")
    first_sha = hub.commit_shas("test-user/tiny-maskdm")[-1]
    second.push_to_hub("tiny-maskdm")

    cache = tmp_path / "my_cache"
    latest = MaskedDDPMPipeline.from_pretrained("test-user/tiny-maskdm", cache_dir=cache)
    pinned = MaskedDDPMPipeline.from_pretrained("test-user/tiny-maskdm", revision=first_sha, cache_dir=cache)
    np.testing.assert_array_equal(sample(latest), sample(second))
    np.testing.assert_array_equal(sample(pinned), sample(first))
    assert list(cache.glob("models--test-user--tiny-maskdm/snapshots/*/transformer/*.safetensors"))

    hub.stop()  # no Hub any more: the cache must do
    offline = MaskedDDPMPipeline.from_pretrained("test-user/tiny-maskdm", cache_dir=cache, local_files_only=True)
    np.testing.assert_array_equal(sample(offline), sample(second))


def test_private_repo_needs_the_token_passed_through(pipe, hub, monkeypatch):
    pipe.push_to_hub("private-maskdm", private=True)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises((RepositoryNotFoundError, OSError)):
        MaskedDDPMPipeline.from_pretrained("test-user/private-maskdm")
    loaded = MaskedDDPMPipeline.from_pretrained("test-user/private-maskdm", token="hf_other_token")
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_variant_from_the_hub(pipe, hub):
    pipe.push_to_hub("tiny-maskdm", variant="ema")
    assert "transformer/diffusion_pytorch_model.ema.safetensors" in hub.files("test-user/tiny-maskdm")
    loaded = MaskedDDPMPipeline.from_pretrained("test-user/tiny-maskdm", variant="ema")
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_push_writes_a_card_and_later_pushes_keep_it(pipe, hub):
    grid = PIL.Image.new("RGB", (16, 16), "red")
    pipe.push_to_hub("tiny-maskdm", training=TRAINING, sample_grid=grid)
    files = hub.files("test-user/tiny-maskdm")
    card = files["README.md"].decode()
    assert "![Samples](samples.png)" in card and "samples.png" in files
    assert "| Mask rate | 90% |" in card and "Twemoji" in card

    make_pipeline(seed=1).push_to_hub("tiny-maskdm", commit_message="new weights")
    assert hub.files("test-user/tiny-maskdm")["README.md"].decode() == card


def test_a_training_output_folder_is_pushed_without_checkpoints_or_logs(pipe, hub, tmp_path):
    out = tmp_path / "out"
    pipe.save_pretrained(out)
    for extra in ("checkpoint-10/model.safetensors", "logs/events.out", "samples/step-000010.png"):
        (out / extra).parent.mkdir(parents=True, exist_ok=True)
        (out / extra).write_bytes(b"x")
    upload_pipeline_folder(out, "from-training", training=TRAINING, sample_grid=PIL.Image.new("RGB", (8, 8)))
    files = hub.files("test-user/from-training")
    assert {"model_index.json", "README.md", "samples.png", "scheduler/scheduler_config.json"} <= set(files)
    assert not [name for name in files if name.startswith(("checkpoint-", "logs/", "samples/"))]
    loaded = MaskedDDPMPipeline.from_pretrained("test-user/from-training")
    np.testing.assert_array_equal(sample(loaded), sample(pipe))


def test_class_names_travel_through_the_hub(hub):
    pipe = make_pipeline(num_class_embeds=3)
    pipe = MaskedDDPMPipeline(pipe.transformer, pipe.scheduler, id2label={0: "cat", 1: "dog", 2: "owl, bird"})
    pipe.push_to_hub("named-maskdm")
    loaded = MaskedDDPMPipeline.from_pretrained("test-user/named-maskdm")
    assert loaded.get_label_ids(["bird", "cat"]) == [2, 0]


def test_save_pretrained_push_to_hub_keeps_the_folders_card(pipe, hub, tmp_path):
    out = tmp_path / "out"
    pipe.save_pretrained(out)
    save_model_card(out, "test-user/from-folder", training=TRAINING, model_config=dict(pipe.transformer.config))
    pipe.save_pretrained(out, push_to_hub=True, repo_id="from-folder")
    assert hub.files("test-user/from-folder")["README.md"] == (out / "README.md").read_bytes()
    assert "Mask kind" in (out / "README.md").read_text()


@pytest.mark.parametrize("num_class_embeds", [None, 3])
def test_model_card_snippet_runs_against_the_hub(hub, tmp_path, monkeypatch, num_class_embeds):
    pipe = make_pipeline(num_class_embeds=num_class_embeds)
    pipe.push_to_hub("tiny-maskdm", training=TRAINING, sample_grid=PIL.Image.new("RGB", (8, 8)))

    card = ModelCard.load("test-user/tiny-maskdm")
    assert card.data.library_name == "diffusers"
    assert {"diffusers", "diffusers-maskdm"} <= set(card.data.tags)
    expected_tag = "class-conditional-image-generation" if num_class_embeds else "unconditional-image-generation"
    assert expected_tag in card.data.tags

    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(python_block(card.text), namespace)  # the snippet a reader would copy, run as is
    assert isinstance(namespace["pipe"], MaskedDDPMPipeline)
    assert len(namespace["images"]) == 4
    assert PIL.Image.open(tmp_path / "sample.png").size == (8, 8)


def test_a_repo_that_is_not_a_maskdm_pipeline_says_what_it_is(hub, tmp_path):
    from huggingface_hub import create_repo

    save_tiny_ddpm_pipeline(tmp_path / "ddpm")
    create_repo("ddpm-tiny")
    upload_folder(repo_id="test-user/ddpm-tiny", folder_path=tmp_path / "ddpm")
    with pytest.raises(ValueError, match="'DDPMPipeline'"):
        MaskedDDPMPipeline.from_pretrained("test-user/ddpm-tiny")
    with pytest.raises(RepositoryNotFoundError):
        MaskedDDPMPipeline.from_pretrained("test-user/does-not-exist")
    with pytest.raises(ValueError, match="neither a folder saved with `save_pretrained` nor a Hub repo id"):
        MaskedDDPMPipeline.from_pretrained(str(tmp_path / "no-such-folder"))


def test_generic_diffusers_entry_point_from_the_hub(pipe, hub, tmp_path, monkeypatch):
    pipe.push_to_hub("tiny-maskdm")
    custom = dict(custom_pipeline=inspect.getfile(MaskedDDPMPipeline), trust_remote_code=True)
    # diffusers' own download step cannot place a component that lives outside diffusers (diffusers #5553) ...
    with pytest.raises(ValueError, match="diffusers_maskdm.models.masked_dit"):
        DiffusionPipeline.from_pretrained("test-user/tiny-maskdm", **custom)
    # The model card warns of exactly what the generic loader says, from the Hub and from a downloaded copy.
    card = ModelCard.load("test-user/tiny-maskdm").text
    with pytest.raises(ValueError) as from_hub:
        DiffusionPipeline.from_pretrained("test-user/tiny-maskdm")
    with pytest.raises(AttributeError) as from_copy:
        DiffusionPipeline.from_pretrained(download_pipeline_folder("test-user/tiny-maskdm"))
    assert str(from_hub.value).replace("`", "").startswith(card.split("(`ValueError: ")[1].split("`)")[0])
    assert str(from_copy.value) in card

    # ... so the generic route downloads first (configs and safetensors only), then loads the folder.
    from diffusers.utils import dynamic_modules_utils

    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    loaded = DiffusionPipeline.from_pretrained(download_pipeline_folder("test-user/tiny-maskdm"), **custom)
    np.testing.assert_array_equal(sample(loaded), sample(pipe))
