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

    no_grid = save_model_card(tmp_path / "bare", "me/maskdm")
    assert "samples.png" not in no_grid.text
