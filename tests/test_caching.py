"""Cache files: checked by content when read, rebuilt (saying so) when damaged, keyed by what the data holds."""

import errno
import logging
import os
import subprocess
import sys

import pytest
import torch

from diffusers_maskdm import caching
from diffusers_maskdm.caching import data_source_id, read_cache_file, save_file_atomically


KEY = {"data": "folder:x", "format": "1"}


def test_a_damaged_cache_file_is_named_and_computed_again(tmp_path, caplog):
    path = tmp_path / "entry.safetensors"
    save_file_atomically({"mean": torch.arange(6.0)}, path, KEY)
    tensors, metadata = read_cache_file(path, KEY)
    assert torch.equal(tensors["mean"], torch.arange(6.0)) and metadata["data"] == "folder:x"
    assert read_cache_file(path, {**KEY, "data": "folder:y"}) is None  # another key
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # one flipped bit in a tensor
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert read_cache_file(path, KEY) is None
    assert f"Cache file {path} does not match its checksum" in caplog.text
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with caplog.at_level(logging.WARNING):
        assert read_cache_file(path, KEY) is None
    assert f"Cache file {path} is damaged" in caplog.text


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"entry.safetensors.tmp-{dead.stdout.strip()}"
    stale.write_bytes(b"half")
    alive = tmp_path / f"entry.safetensors.tmp-{os.getppid()}"  # a writer still at work
    alive.write_bytes(b"half")
    save_file_atomically({"mean": torch.zeros(2)}, tmp_path / "entry.safetensors", KEY)
    assert not stale.exists() and alive.exists()


def test_a_local_folder_is_keyed_by_its_content_whichever_flag_names_it(tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "data" / "1.png").write_bytes(name.encode())
    monkeypatch.chdir(tmp_path / "a")
    first = data_source_id("data", None, None)
    assert first == data_source_id(None, None, "data")
    monkeypatch.chdir(tmp_path / "b")  # the same relative name, another folder
    assert data_source_id("data", None, None) != first
    (tmp_path / "b" / "data" / "labels.jsonl").write_text("{}")  # a changed folder is read again
    assert data_source_id("data", None, None) != data_source_id(None, None, tmp_path / "a" / "data")
    assert data_source_id("user/dataset", "c", None) == "hub:user/dataset:c"


def test_a_full_disk_leaves_no_half_written_file_and_a_cache_goes_on_without_it(tmp_path, monkeypatch, caplog):
    def save_until_the_disk_is_full(tensors, filename, metadata):
        open(filename, "wb").write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(caching, "save_file", save_until_the_disk_is_full)
    path = tmp_path / "cache" / "entry.safetensors"
    with pytest.raises(OSError) as info:
        save_file_atomically({"mean": torch.zeros(2)}, path, KEY)
    assert info.value.errno == errno.ENOSPC
    assert list(path.parent.iterdir()) == []
    # A cache is a shortcut: one warning naming its folder, nothing on disk, and the caller goes on.
    with caplog.at_level(logging.WARNING):
        assert caching.write_cache_file({"mean": torch.zeros(2)}, path, KEY) is False
    (line,) = caplog.messages
    assert f"Could not write a cache file in {path.parent} (the disk is full, " in line and "\n" not in line
    assert list(path.parent.iterdir()) == []
    monkeypatch.undo()  # space freed: the same call caches
    assert caching.write_cache_file({"mean": torch.zeros(2)}, path, KEY) and read_cache_file(path, KEY)
