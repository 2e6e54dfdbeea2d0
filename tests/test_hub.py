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
"""The loopback Hub speaks enough of the Hub API for `huggingface_hub`'s push and pull to round-trip."""

import pytest
from huggingface_hub import create_repo, hf_hub_download, model_info, snapshot_download, upload_folder
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError


def _write_folder(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_create_upload_download_round_trip(hub, tmp_path):
    files = {
        "model_index.json": b'{"a": 1}',
        "transformer/config.json": b"{}",
        "transformer/w.safetensors": b"\x00" * 300,
    }
    _write_folder(tmp_path / "src", files)

    repo_id = create_repo("demo").repo_id
    assert repo_id == "test-user/demo"
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "src", commit_message="add files")
    assert hub.files(repo_id) == {**files, ".gitattributes": hub.files(repo_id)[".gitattributes"]}

    local = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"])
    for rel, content in files.items():
        assert (tmp_path / "hf_home" / "hub").as_posix() in str(local)
        assert open(f"{local}/{rel}", "rb").read() == content
    assert sorted(s.rfilename for s in model_info(repo_id).siblings) == sorted([*files, ".gitattributes"])


def test_exist_ok_and_conflict(hub):
    create_repo("org/demo")
    create_repo("org/demo", exist_ok=True)
    with pytest.raises(Exception, match="409"):
        create_repo("org/demo")


def test_unchanged_files_are_not_committed_again(hub, tmp_path):
    _write_folder(tmp_path / "src", {"a.json": b"1"})
    repo_id = create_repo("demo").repo_id
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    n_commits = len(hub.commit_shas(repo_id))
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "src")
    assert len(hub.commit_shas(repo_id)) == n_commits


def test_revision_pins_an_old_commit(hub, tmp_path):
    repo_id = create_repo("demo").repo_id
    _write_folder(tmp_path / "v1", {"a.json": b"1"})
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "v1")
    first = hub.commit_shas(repo_id)[-1]
    _write_folder(tmp_path / "v2", {"a.json": b"2"})
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "v2")

    assert open(hf_hub_download(repo_id, "a.json"), "rb").read() == b"2"
    assert open(hf_hub_download(repo_id, "a.json", revision=first), "rb").read() == b"1"


def test_missing_repo_and_file_raise_hub_errors(hub):
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-user/nope", "a.json")
    repo_id = create_repo("demo").repo_id
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.json")


def test_writes_need_a_token(hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no token file to fall back on
    with pytest.raises(Exception, match="401"):
        create_repo("demo", token=False)


def test_nothing_but_the_loopback_host_is_reachable(hub):
    import socket

    with pytest.raises(OSError, match="only the loopback Hub"):
        socket.getaddrinfo("huggingface.co", 443)


# -- model cards (no server needed) -----------------------------------------------------------------------------------
def test_model_card_metadata_and_sections(tmp_path):
    from diffusers_maskdm.hub import build_model_card

    card = build_model_card(
        "me/maskdm-emoji-ft",
        training={
            "stage": "finetune",
            "max_train_steps": 5000,
            "train_batch_size": 128,
            "resolution": 32,
            "ema": None,
        },
        model_config={"sample_size": 32, "patch_size": 2, "hidden_size": 256, "num_class_embeds": 10},
        base_model="me/maskdm-emoji-pt",
        datasets=["me/emoji"],
        metrics={"FID (1k samples, 50 DDIM steps)": 41.2},
        license="cc-by-4.0",
    )
    data = card.data
    assert data.library_name == "diffusers" and data.license == "cc-by-4.0"
    assert data.base_model == "me/maskdm-emoji-pt" and data.datasets == ["me/emoji"]
    assert {"diffusers", "diffusers-maskdm", "class-conditional-image-generation"} <= set(data.tags)
    text = card.text
    assert 'MaskedDDPMPipeline.from_pretrained("me/maskdm-emoji-ft")' in text
    assert "class_labels=[0, 1, 2, 3], guidance_scale=2.0" in text
    assert "| Stage | fine-tuning on full images |" in text and "| Resolution | 32x32 |" in text
    assert "| FID (1k samples, 50 DDIM steps) | 41.2 |" in text
    assert "Fine-tuned from [me/maskdm-emoji-pt]" in text
    assert "Twemoji" not in text  # no credit for data that is not Twemoji
    assert "| ema |" not in text  # unknown values are left out

    # The card survives a save/load as README.md with its YAML header.
    card.save(tmp_path / "README.md")
    from huggingface_hub import ModelCard

    assert ModelCard.load(tmp_path / "README.md").data.base_model == "me/maskdm-emoji-pt"


def test_save_model_card_writes_readme_and_grid(tmp_path):
    import PIL.Image

    from diffusers_maskdm.hub import save_model_card

    card = save_model_card(
        tmp_path / "out",
        "me/maskdm",
        training={"stage": "pretrain", "mask_kind": "block", "mask_rate": 0.5, "train_data_dir": "twemoji (default)"},
        sample_grid=PIL.Image.new("RGB", (4, 4)),
    )
    assert (tmp_path / "out" / "samples.png").is_file()
    text = (tmp_path / "out" / "README.md").read_text()
    assert text == str(card) or text.strip() == str(card).strip()
    assert "![Samples](samples.png)" in text and "| Mask kind | block |" in text and "| Mask rate | 50% |" in text
    assert "CC-BY 4.0" in text and "unconditional-image-generation" in card.data.tags
    assert "masked-pretraining" in card.data.tags

    # The grid is upscaled (nearest) so that a grid of small images is visible on the card.
    assert PIL.Image.open(tmp_path / "out" / "samples.png").size == (512, 512)

    no_grid = save_model_card(tmp_path / "bare", "me/maskdm")
    assert "samples.png" not in no_grid.text


def test_save_model_card_reads_the_saved_pipeline(tmp_path):
    from diffusers import DDPMScheduler

    from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel
    from diffusers_maskdm.hub import save_model_card

    model = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=1, num_attention_heads=2)
    MaskedDDPMPipeline(model, DDPMScheduler(prediction_type="sample")).save_pretrained(tmp_path)
    text = save_model_card(tmp_path, "me/x0").text
    assert "The model predicts `sample`." in text and "`PNDMScheduler`" in text
    assert f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters" in text
    assert "Architecture: sample_size=8, in_channels=3, patch_size=2, hidden_size=32" in text


def test_model_card_usage_first_caveat_limitations_and_tags():
    from diffusers_maskdm.hub import build_model_card

    training = {"stage": "pretrain", "max_train_steps": 3000, "train_batch_size": 64, "data": "my-emoji"}
    card = build_model_card(
        "me/maskdm", training=training, metrics={"FID-1k (50 DDIM steps)": 48.5}, num_parameters=1_234_567
    )
    text = card.text
    assert "diffusers-training" in card.data.tags and card.data.library_name == "diffusers"
    # The package's usage comes before everything but the one-paragraph introduction.
    assert text.index("## Usage") < min(text.index(h) for h in ("## Samples", "## Training", "## Limitations"))
    assert 'The generic `DiffusionPipeline.from_pretrained("me/maskdm")`' in text
    limitations = text[text.index("## Limitations") :]
    assert "Trained on my-emoji for 3000 steps of batch size 64." in limitations
    assert "FID: 48.5 (FID-1k (50 DDIM steps))." in limitations and "1.2 M parameters" in limitations
    assert "masked pre-training weights" in limitations
    unmeasured = build_model_card("me/maskdm").text
    assert "No FID was measured" in unmeasured and "does not record what the model was trained on" in unmeasured


@pytest.mark.parametrize("base_model", ["./maskdm-pretrain", "maskdm-pretrain", "../runs/pretrain", "/abs/pretrain"])
def test_a_local_base_model_is_never_named_as_a_hub_id(base_model):
    from diffusers_maskdm.hub import build_model_card

    card = build_model_card("me/ft", base_model=base_model)
    assert card.data.base_model is None and base_model not in card.text
    assert "Fine-tuned from a local checkpoint" in card.text
    assert build_model_card("me/ft", base_model="me/maskdm-pt").data.base_model == "me/maskdm-pt"


def test_a_latent_model_card_names_its_vae_and_never_a_local_path(tmp_path):
    from diffusers_maskdm.hub import build_model_card

    config = {"sample_size": 32, "in_channels": 4, "patch_size": 2}
    card = build_model_card("me/latent", model_config=config, vae="stabilityai/sd-vae-ft-mse").text
    assert "An unconditional latent-space diffusion transformer" in card
    link = "[stabilityai/sd-vae-ft-mse](https://huggingface.co/stabilityai/sd-vae-ft-mse)"
    assert f"Its samples are latents, decoded to images by the VAE {link}." in card
    assert "latent space, no text conditioning" in card and "pixel" not in card
    assert "32x32 px" not in card  # the latent side is not the image size
    assert "256x256 px" in build_model_card("me/l", training={"resolution": 256}, vae="a/b").text
    for path in (str(tmp_path), "./my-vae", "/abs/vae", "org/vae/subfolder"):
        card = build_model_card("me/latent", vae=path).text
        assert path not in card and "decoded to images by a VAE from a local folder (not on the Hub)." in card
    assert "decoded to images by a local AutoencoderKL." in build_model_card("me/l", vae="a local AutoencoderKL").text
    pixel = build_model_card("me/pixel").text
    assert "pixel-space diffusion transformer" in pixel and "pixel space, no text" in pixel and "latent" not in pixel


def _scheduler_fails(scheduler_class, prediction_type: str) -> bool:
    import torch
    from diffusers import DDPMScheduler

    scheduler = scheduler_class.from_config(
        DDPMScheduler(num_train_timesteps=100).config, prediction_type=prediction_type
    )
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 3, 4, 4) * scheduler.init_noise_sigma
    try:
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(sample, t)
            sample = scheduler.step(torch.randn_like(model_input), t, sample).prev_sample
    except (ValueError, NotImplementedError) as error:
        assert prediction_type in str(error)
        return True
    return not bool(torch.isfinite(sample).all())


def test_unsupported_scheduler_table_is_what_the_schedulers_do():
    import diffusers
    from diffusers import DDPMScheduler

    from diffusers_maskdm.hub import UNSUPPORTED_SCHEDULERS

    measured = {prediction_type: [] for prediction_type in ("epsilon", "v_prediction", "sample")}
    for scheduler_class in sorted(DDPMScheduler().compatibles, key=lambda c: c.__name__):
        try:
            getattr(diffusers, scheduler_class.__name__)(num_train_timesteps=10)
        except ImportError:  # DPMSolverSDE (torchsde), LMS (scipy): not installed, not measured
            continue
        for prediction_type, failing in measured.items():
            if _scheduler_fails(scheduler_class, prediction_type):
                failing.append(scheduler_class.__name__)
    assert {key: tuple(value) for key, value in measured.items() if value} == UNSUPPORTED_SCHEDULERS

    from diffusers_maskdm.hub import build_model_card

    text = build_model_card("me/x0", training={"prediction_type": "sample"}).text
    assert "`EulerAncestralDiscreteScheduler`, `KDPM2AncestralDiscreteScheduler`, `KDPM2DiscreteScheduler`" in text
    assert (
        "The model predicts `v_prediction`. Any diffusers scheduler"
        in build_model_card("me/v", prediction_type="v_prediction").text
    )
