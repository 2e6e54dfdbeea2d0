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
"""Checkpoints: atomic, verified by content (a flipped bit is caught), `latest` falls back, disk full, rewrites."""

import errno
import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from accelerate import PartialState

from diffusers_maskdm.training.checkpointing import (
    CheckpointWriteError,
    check_checkpoint,
    check_finite,
    find_latest_checkpoint,
    publish_folder,
    recover_interrupted_writes,
    resolve_resume_checkpoint,
    write_checkpoint,
)


@pytest.fixture(scope="module")
def state():
    return PartialState(cpu=True)


def fake_save(folder: str) -> None:
    """Writes what accelerate's `save_state` would: a few files, one in a sub-folder."""
    folder = Path(folder)
    (folder / "transformer").mkdir(parents=True, exist_ok=True)
    (folder / "optimizer.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "transformer" / "config.json").write_text("{}")


def write(state, output_dir: Path, step: int, save_fn=fake_save, limit=None) -> Path:
    return write_checkpoint(state, output_dir, step, save_fn, {"global_step": step}, checkpoints_total_limit=limit)


def test_a_written_checkpoint_is_intact_with_checksums_and_no_temporary_folder_remains(state, tmp_path):
    path = write(state, tmp_path, 2)
    assert path == tmp_path / "checkpoint-2" and check_checkpoint(path) is None
    manifest = json.loads((path / "training_state.json").read_text())
    assert manifest["global_step"] == 2
    assert manifest["sha256"] == {
        "optimizer.bin": hashlib.sha256(bytes(range(256)) * 4).hexdigest(),
        "transformer/config.json": hashlib.sha256(b"{}").hexdigest(),
    }
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("PytorchStreamWriter failed: No space left")],
)
def test_disk_full_leaves_earlier_checkpoints_and_no_half_written_one(state, tmp_path, error):
    write(state, tmp_path, 2)

    def save_until_the_disk_is_full(folder):
        fake_save(folder)
        raise error

    with pytest.raises(CheckpointWriteError) as info:
        write(state, tmp_path, 4, save_fn=save_until_the_disk_is_full)
    message = str(info.value)
    assert "checkpoint-4" in message and "disk is full" in message
    assert f"the last checkpoint is {tmp_path / 'checkpoint-2'}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert check_checkpoint(tmp_path / "checkpoint-2") is None


def flip_one_bit(file: Path, offset: int = 100) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def test_damage_of_any_kind_is_recognised(state, tmp_path):
    path = write(state, tmp_path, 2)
    flip_one_bit(path / "optimizer.bin")  # same size, one bit changed
    assert check_checkpoint(path) == "optimizer.bin does not match its checksum (damaged or replaced)"
    (path / "optimizer.bin").unlink()
    assert check_checkpoint(path) == "optimizer.bin is missing"
    # The manifest covers itself: one changed digit of the step would resume elsewhere.
    path = write(state, tmp_path, 4)
    assert check_checkpoint(path) is None
    manifest = path / "training_state.json"
    original = manifest.read_text()
    saved = json.loads(original)
    manifest.write_text(json.dumps({**saved, "global_step": saved["global_step"] + 10}, indent=2, sort_keys=True))
    assert "training_state.json was changed after it was written" in check_checkpoint(path)
    manifest.write_text(original)
    # A file it does not list (an index and shard beside the verified weights) would be loaded instead.
    (path / "model.safetensors.index.json").write_text("{}")
    assert "it holds model.safetensors.index.json, which its checksums do not list" in check_checkpoint(path)
    (path / "model.safetensors.index.json").unlink()
    assert check_checkpoint(path) is None
    (path / "training_state.json").unlink()
    assert "no readable training_state.json" in check_checkpoint(path)


def test_latest_falls_back_to_the_newest_intact_checkpoint_saying_so(state, tmp_path, caplog):
    write(state, tmp_path, 2)
    write(state, tmp_path, 4)
    flip_one_bit(tmp_path / "checkpoint-4" / "optimizer.bin")
    (tmp_path / "checkpoint-6").mkdir()  # a folder that only looks like a checkpoint
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert "Skipping damaged checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    assert "checkpoint-6" in caplog.text and "Falling back" in caplog.text
    # Named explicitly, a damaged checkpoint is refused by name.
    with pytest.raises(ValueError, match="'checkpoint-4' cannot be resumed from: optimizer.bin does not match"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-4")


def test_resume_from_a_named_checkpoint(state, tmp_path):
    write(state, tmp_path, 2)
    assert resolve_resume_checkpoint(tmp_path, "checkpoint-2") == tmp_path / "checkpoint-2"
    assert resolve_resume_checkpoint(tmp_path, None) is None
    assert resolve_resume_checkpoint(tmp_path / "empty", "latest") is None
    with pytest.raises(ValueError, match="--resume_from_checkpoint='checkpoint-9' does not exist"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-9")


def test_total_limit_keeps_the_newest_checkpoints(state, tmp_path):
    for step in (2, 4, 6):
        write(state, tmp_path, step, limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_a_rewrite_keeps_one_intact_copy_at_every_moment(state, tmp_path):
    write(state, tmp_path, 2)
    write(state, tmp_path, 2, save_fn=lambda f: (Path(f).mkdir(), (Path(f) / "new.bin").write_text("1")))
    assert sorted(p.name for p in (tmp_path / "checkpoint-2").iterdir()) == ["new.bin", "training_state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    # A kill between the two renames of a rewrite: the old copy is aside, the new one staged. Recovery puts the
    # intact old copy back and drops the staged one.
    (tmp_path / "checkpoint-2").rename(tmp_path / ".tmp-old-checkpoint-2")
    (tmp_path / ".tmp-checkpoint-2").mkdir()
    recover_interrupted_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert check_checkpoint(tmp_path / "checkpoint-2") is None


def test_publish_folder_replaces_an_existing_folder(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "b").write_text("new")
    publish_folder(tmp_path / "new", tmp_path / "old")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["b"]


def test_non_finite_weights_are_never_saved(state, tmp_path):
    weights = [torch.zeros(3), torch.tensor([1.0, float("nan")])]
    with pytest.raises(ValueError, match="the transformer's weights hold NaN or inf"):
        check_finite(weights, "transformer's weights")

    def save_nan_weights(folder):
        fake_save(folder)
        check_finite(weights, "transformer's weights")

    write(state, tmp_path, 2)
    with pytest.raises(CheckpointWriteError, match="checkpoint-4 .*NaN or inf.*the last checkpoint is .*checkpoint-2"):
        write(state, tmp_path, 4, save_fn=save_nan_weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


def test_checkpoints_of_earlier_versions_are_checked_by_size(state, tmp_path):
    path = write(state, tmp_path, 2)
    manifest = json.loads((path / "training_state.json").read_text())
    manifest.pop("state_sha256")  # earlier versions had neither the file checksums nor the manifest's own
    manifest["files"] = {name: (path / name).stat().st_size for name in manifest.pop("sha256")}
    (path / "training_state.json").write_text(json.dumps(manifest))
    assert check_checkpoint(path) is None and find_latest_checkpoint(tmp_path) == path
    (path / "optimizer.bin").write_bytes(b"short")
    assert check_checkpoint(path) == "optimizer.bin does not match its checksum (damaged or replaced)"
