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
"""Atomic checkpoints: complete or absent, incomplete ones skipped by `latest`, disk-full and unwritable folders."""

import errno
import json
import logging
from pathlib import Path

import pytest
from accelerate import PartialState

from diffusers_maskdm.training.checkpointing import (
    CheckpointWriteError,
    check_checkpoint,
    check_output_dir,
    find_latest_checkpoint,
    prune_checkpoints,
    publish_folder,
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
    (folder / "optimizer.bin").write_bytes(b"x" * 1000)
    (folder / "transformer" / "config.json").write_text("{}")


def write(state, output_dir: Path, step: int, save_fn=fake_save, limit=None) -> Path:
    return write_checkpoint(state, output_dir, step, save_fn, {"global_step": step}, checkpoints_total_limit=limit)


def test_a_written_checkpoint_is_complete_and_no_temporary_folder_remains(state, tmp_path):
    path = write(state, tmp_path, 2)
    assert path == tmp_path / "checkpoint-2" and check_checkpoint(path) is None
    manifest = json.loads((path / "training_state.json").read_text())
    assert manifest["global_step"] == 2
    assert manifest["files"] == {"optimizer.bin": 1000, "transformer/config.json": 2}
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
    assert f"last complete checkpoint is {tmp_path / 'checkpoint-2'}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert check_checkpoint(tmp_path / "checkpoint-2") is None


def test_incomplete_checkpoints_are_recognised(state, tmp_path):
    path = write(state, tmp_path, 2)
    (path / "optimizer.bin").write_bytes(b"x" * 10)  # truncated
    assert "optimizer.bin has 10 bytes instead of 1000" in check_checkpoint(path)
    (path / "optimizer.bin").unlink()
    assert "optimizer.bin is missing" in check_checkpoint(path)
    (path / "training_state.json").unlink()
    assert "did not finish" in check_checkpoint(path)


def test_latest_skips_incomplete_checkpoints_with_a_warning(state, tmp_path, caplog):
    write(state, tmp_path, 2)
    write(state, tmp_path, 4)
    (tmp_path / "checkpoint-4" / "optimizer.bin").write_bytes(b"")
    (tmp_path / "checkpoint-6").mkdir()  # a folder that only looks like a checkpoint
    (tmp_path / ".tmp-checkpoint-8").mkdir()  # an interrupted write
    with caplog.at_level(logging.WARNING):
        assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
        assert resolve_resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-2"
    assert "Skipping incomplete checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    assert "checkpoint-6" in caplog.text and "interrupted" in caplog.text


def test_resume_from_a_named_checkpoint(state, tmp_path):
    write(state, tmp_path, 2)
    assert resolve_resume_checkpoint(tmp_path, "checkpoint-2") == tmp_path / "checkpoint-2"
    assert resolve_resume_checkpoint(tmp_path, None) is None
    assert resolve_resume_checkpoint(tmp_path / "empty", "latest") is None
    with pytest.raises(ValueError, match="--resume_from_checkpoint='checkpoint-9' does not exist"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-9")
    (tmp_path / "checkpoint-2" / "training_state.json").unlink()
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-2")


def test_total_limit_keeps_the_newest_complete_checkpoints(state, tmp_path):
    (tmp_path / "checkpoint-1").mkdir()  # incomplete: neither counted nor deleted
    for step in (2, 4, 6):
        write(state, tmp_path, step, limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-4", "checkpoint-6"]
    assert prune_checkpoints(tmp_path, 1) == [tmp_path / "checkpoint-4"]


def test_rewriting_a_step_replaces_the_checkpoint(state, tmp_path):
    write(state, tmp_path, 2)
    write(
        state, tmp_path, 2, save_fn=lambda folder: (Path(folder).mkdir(), (Path(folder) / "new.bin").write_text("1"))
    )
    assert sorted(p.name for p in (tmp_path / "checkpoint-2").iterdir()) == ["new.bin", "training_state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


def test_publish_folder_replaces_an_existing_folder(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "b").write_text("new")
    publish_folder(tmp_path / "new", tmp_path / "old")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["b"]


def test_output_dir_checks(tmp_path):
    check_output_dir(tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--output_dir=.* cannot be created"):
        check_output_dir(tmp_path / "file" / "out")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="MiB free, but a checkpoint and the final pipeline need"):
        check_output_dir(tmp_path, required_bytes=2**62)
