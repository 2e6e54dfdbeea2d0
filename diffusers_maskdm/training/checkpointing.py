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
"""Checkpoints: accelerate's `save_state` in diffusers-format folders, plus the promises accelerate does not make.

`checkpoint-<step>/` holds accelerate's state (optimizer, LR schedule, RNG, gradient scaler), `transformer/` and,
with EMA, `transformer_ema/` (diffusers folders, safetensors), and `training_state.json`: the step, the data position
and the SHA-256 of every file. Kept here (see `docs/reliability.md`): **atomic** writes (staged, flushed, renamed; a
rewrite keeps one intact copy at every moment), **verified** resumes (checksums; `latest` falls back to the newest
intact checkpoint) and **finite** weights (a NaN or inf is never saved)."""

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather
from diffusers.training_utils import EMAModel

from ..caching import is_disk_full
from ..models import MaskedDiTModel


logger = logging.getLogger(__name__)

STATE_FILENAME = "training_state.json"
TRANSFORMER_SUBFOLDER = "transformer"
EMA_SUBFOLDER = "transformer_ema"
TEMP_PREFIX = ".tmp-"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_OLD_RE = re.compile(rf"^{re.escape(TEMP_PREFIX)}old-(checkpoint-\d+)$")  # moved aside while its step is rewritten


class CheckpointWriteError(RuntimeError):
    """A checkpoint or the final pipeline could not be written (disk full, permissions, non-finite weights); earlier
    checkpoints are untouched."""


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir` (intact or not), oldest first."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if _CHECKPOINT_RE.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda path: int(path.name.split("-")[1]))


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The `training_state.json` of checkpoint `path` (step, data position, `train_seconds`, checksums)."""
    return json.loads((Path(path) / STATE_FILENAME).read_text(encoding="utf-8"))


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_digest(state: dict) -> str:
    """The SHA-256 of a checkpoint's training state (step, data position, checksums), so the manifest covers itself."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


# Verified: accelerate's `load_state` reads whatever is there; a damaged file must be named, not loaded.
def check_checkpoint(path: str | os.PathLike) -> str | None:
    """Why checkpoint `path` cannot be resumed from (a file missing or changed since it was written), or `None`."""
    path = Path(path)
    try:
        state = read_training_state(path)
        expected = state.get("sha256") or dict(state["files"])  # Checkpoints of earlier versions list sizes.
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"it has no readable {STATE_FILENAME} with checksums (the write did not finish, or it is damaged)"
    recorded = state.pop("state_sha256", None)  # absent in checkpoints of earlier versions
    if recorded is not None and recorded != _state_digest(state):
        return f"{STATE_FILENAME} was changed after it was written (its step or data position would be wrong)"
    present = {file.relative_to(path).as_posix() for file in path.rglob("*") if file.is_file()}
    for name in sorted(present - set(expected) - {STATE_FILENAME}):
        return f"it holds {name}, which its checksums do not list (added after it was written; it could be loaded)"
    for name, digest in sorted(expected.items()):
        if not (path / name).is_file():
            return f"{name} is missing"
        if (_sha256(path / name) if isinstance(digest, str) else (path / name).stat().st_size) != digest:
            return f"{name} does not match its checksum (damaged or replaced)"
    return None


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The intact checkpoint with the highest step in `output_dir`, or `None`; each damaged one skipped is warned of."""
    for path in reversed(list_checkpoints(output_dir)):
        problem = check_checkpoint(path)
        if problem is None:
            return path
        logger.warning("Skipping damaged checkpoint %s: %s. Falling back to an earlier one.", path, problem)
    return None


def named_checkpoint(output_dir: str | os.PathLike, name: str) -> Path:
    """The folder of checkpoint `name` (as given, or in `output_dir`); a `ValueError` if there is none."""
    path = Path(name)
    if not path.exists() and not path.is_absolute():
        path = Path(output_dir) / name
    if not path.is_dir():
        raise ValueError(
            f"--resume_from_checkpoint={name!r} does not exist (also looked in --output_dir). Fix: pass a "
            "`checkpoint-<step>` folder, or `latest` for the newest intact one."
        )
    return path


def resolve_resume_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """The checkpoint `--resume_from_checkpoint` names: `None`, `"latest"` (the newest intact one, or `None`) or a
    folder (also looked for in `output_dir`); a `ValueError` if a named one does not exist or is damaged."""
    if resume_from_checkpoint in (None, "latest"):
        return find_latest_checkpoint(output_dir) if resume_from_checkpoint else None
    path = named_checkpoint(output_dir, resume_from_checkpoint)
    problem = check_checkpoint(path)
    if problem is not None:
        raise ValueError(
            f"--resume_from_checkpoint={resume_from_checkpoint!r} cannot be resumed from: {problem}. Fix: pass "
            "another checkpoint, or `latest`, which skips damaged ones."
        )
    return path


# Atomic: accelerate's `save_state` writes in place, so a kill mid-write leaves a half checkpoint under its real name.
def recover_interrupted_writes(output_dir: str | os.PathLike) -> None:
    """After a kill: drop half-written `.tmp-*` folders, and put back a checkpoint moved aside for a rewrite."""
    for temp in sorted(Path(output_dir).glob(f"{TEMP_PREFIX}*")):
        old = _OLD_RE.match(temp.name)
        if old and not (temp.parent / old.group(1)).exists():
            logger.warning("Restoring %s, moved aside by a rewrite that was interrupted.", old.group(1))
            os.rename(temp, temp.parent / old.group(1))
        else:
            logger.warning("Removing %s, left by a write that was interrupted (the run was killed).", temp)
            shutil.rmtree(temp, ignore_errors=True)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # Some platforms cannot open a folder; the rename is still atomic there.
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish_folder(temp: Path, final: Path) -> None:
    """Flush `temp` and rename it to `final` (same parent); an existing `final` waits in `.tmp-old-<name>` until the
    new one is in place (after a kill in between, `recover_interrupted_writes` puts it back)."""
    for file in [*temp.rglob("*"), temp]:
        _fsync(file)
    old = final.with_name(f"{TEMP_PREFIX}old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(temp, final)
    _fsync(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def on_all_processes(state, succeeded: bool) -> bool:
    """Whether `succeeded` holds on every process (of the `Accelerator` or `PartialState`), so all act together."""
    if state.num_processes > 1:
        return bool(gather(torch.tensor([float(succeeded)], device=state.device)).min().item() == 1.0)
    return succeeded


def write_checkpoint(
    state,
    output_dir: str | os.PathLike,
    step: int,
    save_fn: Callable[[str], None],
    training_state: dict[str, Any],
    checkpoints_total_limit: int | None = None,
) -> Path:
    """
    Write `checkpoint-<step>` atomically with its checksums; call it on every process.

    Args:
        state: the `accelerate.Accelerator` or `PartialState`.
        output_dir (`str` or `os.PathLike`): where checkpoints live.
        step (`int`): the global step, for the folder name.
        save_fn (`Callable[[str], None]`): writes into the folder it is given (`accelerator.save_state`).
        training_state (`dict`): saved with the checksums in `training_state.json`.
        checkpoints_total_limit (`int`, *optional*): keep only the newest this many checkpoints.

    Raises:
        `CheckpointWriteError`: if writing failed on any process (earlier checkpoints are untouched).
    """
    final = Path(output_dir) / f"checkpoint-{step}"
    temp = final.with_name(f"{TEMP_PREFIX}{final.name}")
    if state.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
    state.wait_for_everyone()
    error = None
    try:
        save_fn(str(temp))
    except Exception as caught:  # Disk full: OSError, torch's RuntimeError, SafetensorError; NaN weights: ValueError.
        error = caught
    if on_all_processes(state, error is None) and state.is_main_process:
        try:
            manifest = {**training_state, "sha256": {}}
            for file in sorted(p for p in temp.rglob("*") if p.is_file()):
                manifest["sha256"][file.relative_to(temp).as_posix()] = _sha256(file)
            manifest["state_sha256"] = _state_digest(manifest)
            (temp / STATE_FILENAME).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            publish_folder(temp, final)
        except Exception as caught:
            error = caught
    if not on_all_processes(state, error is None):
        if state.is_main_process:
            shutil.rmtree(temp, ignore_errors=True)
        reason = f"{type(error).__name__}: {error}" if error is not None else "it failed on another process"
        full = " The disk is full: free space (or lower --checkpoints_total_limit), then resume."
        hint = full if is_disk_full(error) else ""
        earlier = [path for path in list_checkpoints(output_dir) if path != final]
        last = f"the last checkpoint is {earlier[-1]}" if earlier else "there is no earlier checkpoint"
        raise CheckpointWriteError(
            f"Could not write checkpoint {final} ({reason}).{hint} Nothing was overwritten: {last}; resume with "
            "--resume_from_checkpoint latest."
        )
    if state.is_main_process:
        logger.info("Saved checkpoint %s", final)
        # accelerate's `total_limit` only prunes its own `checkpoints/checkpoint_<i>` naming, not this layout.
        for old in list_checkpoints(output_dir)[:-checkpoints_total_limit] if checkpoints_total_limit else []:
            if old != final:
                logger.info("Removing %s (--checkpoints_total_limit=%d)", old, checkpoints_total_limit)
                shutil.rmtree(old)
    state.wait_for_everyone()
    return final


def check_finite(parameters, what: str) -> None:
    """Raise a `ValueError` naming `what` when a parameter holds NaN or inf (one device sync for all of them)."""
    if not bool(torch.stack([p.detach().isfinite().all() for p in parameters]).all()):
        raise ValueError(
            f"the {what} hold NaN or inf values, so they are not saved: lower --learning_rate (or --max_grad_norm), "
            "or train in full precision, then resume from the last checkpoint"
        )


def register_checkpoint_hooks(accelerator, ema_model=None) -> None:
    """Make `accelerator.save_state` / `load_state` write and read the transformer (and its EMA) as diffusers folders,
    `transformer/` and `transformer_ema/`, as diffusers' training scripts do; non-finite weights are refused."""

    def save_model_hook(models, weights, output_dir):
        model = accelerator.unwrap_model(models[0])
        check_finite(model.parameters(), "transformer's weights")
        if ema_model is not None:
            check_finite(ema_model.shadow_params, "EMA weights")
        if accelerator.is_main_process:
            model.save_pretrained(os.path.join(output_dir, TRANSFORMER_SUBFOLDER))
            if ema_model is not None:
                ema_model.save_pretrained(os.path.join(output_dir, EMA_SUBFOLDER))
        weights.clear()  # Saved above: accelerate must not write them a second time.

    def load_model_hook(models, input_dir):
        model = accelerator.unwrap_model(models.pop())
        model.load_state_dict(MaskedDiTModel.from_pretrained(input_dir, subfolder=TRANSFORMER_SUBFOLDER).state_dict())
        if ema_model is not None:
            if not os.path.isdir(os.path.join(input_dir, EMA_SUBFOLDER)):
                raise ValueError(
                    f"{input_dir!r} has no {EMA_SUBFOLDER}/ (it was saved without --use_ema). Fix: resume without "
                    "--use_ema, or start a new run."
                )
            loaded = EMAModel.from_pretrained(os.path.join(input_dir, EMA_SUBFOLDER), model_cls=MaskedDiTModel)
            ema_model.load_state_dict(loaded.state_dict())
            ema_model.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
