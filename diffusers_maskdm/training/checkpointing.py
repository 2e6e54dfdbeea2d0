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
"""Checkpoints that survive a kill: atomic writes, completeness checks, `latest`, pruning, and accelerate hooks.

A checkpoint is a folder `checkpoint-<step>` in the output directory, holding accelerate's state (optimizer, LR
schedule, RNG, gradient scaler), the transformer in diffusers format (`transformer/`), the EMA weights in diffusers
format (`transformer_ema/`) and `training_state.json` (step, data position, loss-guard counters, and the size of every
file of the checkpoint).

Every checkpoint is written into a hidden temporary folder `.tmp-checkpoint-<step>` in the same directory, flushed to
disk, and then renamed into place: a rename within one file system is atomic, so a run killed at any moment (SIGKILL
or power loss included) leaves either the complete checkpoint or none, never half of one. `training_state.json` is
written last and lists the size of every file, so a folder damaged afterwards (copied in part, truncated) is
recognised as incomplete and skipped by `--resume_from_checkpoint latest` with a warning.
"""

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TEMP_PREFIX = ".tmp-"
STATE_FILENAME = "training_state.json"
TRANSFORMER_SUBFOLDER = "transformer"
EMA_SUBFOLDER = "transformer_ema"
STATE_FORMAT_VERSION = 1
# What `EMAModel.save_pretrained` adds to the model config, besides the weights.
EMA_STATE_KEYS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)

_CHECKPOINT_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")

# Test hook: with this variable set to a step number, the main process pauses (sleeps) inside the write of that
# step's checkpoint, after the state is in the temporary folder and before the rename, and writes a marker file
# `.test-paused-checkpoint-<step>` into the output directory. Tests kill the process there.
PAUSE_IN_CHECKPOINT_ENV = "MASKDM_TEST_PAUSE_IN_CHECKPOINT"


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions, ...). Earlier checkpoints are untouched."""


# ---------------------------------------------------------------------------------------------------------------------
# Finding checkpoints
# ---------------------------------------------------------------------------------------------------------------------
def checkpoint_path(output_dir: str | os.PathLike, step: int) -> Path:
    """`<output_dir>/checkpoint-<step>`."""
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """All `checkpoint-<step>` folders of `output_dir` (complete or not), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for entry in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The `training_state.json` of checkpoint `path`.

    Raises:
        `ValueError`: if the file is missing or unreadable.
    """
    state_file = Path(path) / STATE_FILENAME
    try:
        return json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{str(state_file)!r} is missing or unreadable ({error}).") from error


def check_checkpoint(path: str | os.PathLike) -> str | None:
    """Why checkpoint folder `path` cannot be resumed from, or `None` when it is complete.

    Complete means: `training_state.json` is readable, and every file it lists is present with the recorded size.
    """
    path = Path(path)
    if not path.is_dir():
        return "it is not a directory"
    try:
        state = read_training_state(path)
    except ValueError:
        return f"it has no readable {STATE_FILENAME} (the write did not finish)"
    files = state.get("files")
    if not isinstance(files, dict) or not isinstance(state.get("global_step"), int):
        return f"its {STATE_FILENAME} is not a checkpoint manifest"
    for relative, size in files.items():
        file = path / relative
        if not file.is_file():
            return f"{relative} is missing"
        if file.stat().st_size != size:
            return f"{relative} has {file.stat().st_size} bytes instead of {size} (truncated or replaced)"
    return None


def interrupted_writes(output_dir: str | os.PathLike) -> list[Path]:
    """Temporary folders left by checkpoint or pipeline writes that were interrupted."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if p.name.startswith(TEMP_PREFIX) and p.is_dir())


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """
    The complete checkpoint with the highest step in `output_dir`, or `None`.

    Incomplete `checkpoint-<step>` folders are skipped with a warning naming what is wrong; temporary folders of
    interrupted writes are mentioned and never used.
    """
    for temp in interrupted_writes(output_dir):
        logger.warning("Ignoring %s: a checkpoint write that was interrupted (the run was killed while saving).", temp)
    for step, path in reversed(list_checkpoints(output_dir)):
        problem = check_checkpoint(path)
        if problem is None:
            return path
        logger.warning("Skipping incomplete checkpoint %s (step %d): %s.", path, step, problem)
    return None


def resolve_resume_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """
    The checkpoint folder `--resume_from_checkpoint` names, or `None` to start from scratch.

    Args:
        output_dir (`str` or `os.PathLike`): the run's output directory.
        resume_from_checkpoint (`str`, *optional*): `"latest"` (the newest complete checkpoint of `output_dir`, or
            a fresh start when there is none), a checkpoint folder, or the name of one inside `output_dir`.

    Raises:
        `ValueError`: if a named checkpoint does not exist or is incomplete.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        latest = find_latest_checkpoint(output_dir)
        if latest is None:
            logger.info(
                "--resume_from_checkpoint latest: no complete checkpoint in %s, starting from scratch.", output_dir
            )
        return latest
    path = Path(resume_from_checkpoint)
    if not path.exists() and not path.is_absolute():
        path = Path(output_dir) / resume_from_checkpoint
    if not path.is_dir():
        raise ValueError(
            f"--resume_from_checkpoint={resume_from_checkpoint!r} does not exist (also looked in --output_dir). "
            "Fix: pass a `checkpoint-<step>` folder, or `latest` for the newest complete one."
        )
    problem = check_checkpoint(path)
    if problem is not None:
        raise ValueError(
            f"--resume_from_checkpoint={resume_from_checkpoint!r} is not a complete checkpoint: {problem}. Fix: pass "
            "another checkpoint, or `latest`, which skips incomplete ones."
        )
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------
def _fsync_tree(folder: Path) -> None:
    """Flush every file of `folder`, then the folders themselves, so a rename that follows publishes data on disk."""
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as file:
                os.fsync(file.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Some platforms cannot open a folder; the rename is still atomic there.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_sizes(folder: Path) -> dict[str, int]:
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            file = Path(root) / name
            sizes[file.relative_to(folder).as_posix()] = file.stat().st_size
    return dict(sorted(sizes.items()))


def _remove_tree(path: Path) -> None:
    """Delete a folder so that it never looks like a valid folder half-way: rename it to a temporary name first."""
    if not path.exists():
        return
    doomed = path.with_name(f"{TEMP_PREFIX}deleting-{path.name}-{os.getpid()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def publish_folder(temp: Path, final: Path) -> None:
    """Flush `temp` and rename it to `final` (replacing an existing `final`). Both must be in the same folder."""
    _fsync_tree(temp)
    if final.exists():
        # A folder cannot be renamed over a non-empty one: move the old one aside first. A kill in between leaves
        # both under temporary names, which are never mistaken for a checkpoint.
        old = final.with_name(f"{TEMP_PREFIX}old-{final.name}-{os.getpid()}")
        os.rename(final, old)
        os.rename(temp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(temp, final)
    _fsync_dir(final.parent)


def _maybe_pause_for_tests(output_dir: Path, step: int) -> None:
    value = os.environ.get(PAUSE_IN_CHECKPOINT_ENV)
    if value and int(value) == step:
        (output_dir / f".test-paused-checkpoint-{step}").write_text(str(os.getpid()))
        time.sleep(600)


def _all_processes_succeeded(state, succeeded: bool) -> bool:
    """True when `succeeded` holds on every process (one small collective when there are several)."""
    if getattr(state, "num_processes", 1) <= 1:
        return succeeded
    from accelerate.utils import gather

    flag = torch.tensor([1.0 if succeeded else 0.0], device=state.device)
    return bool(gather(flag).min().item() == 1.0)


def write_checkpoint(
    state,
    output_dir: str | os.PathLike,
    step: int,
    save_fn: Callable[[str], None],
    training_state: dict[str, Any],
    checkpoints_total_limit: int | None = None,
) -> Path:
    """
    Write checkpoint `checkpoint-<step>` atomically; call it on every process.

    `save_fn(folder)` writes the state into the temporary folder on every process (e.g. `accelerator.save_state`).
    The main process then writes `training_state.json` (the given `training_state` plus the size of every file),
    flushes, and renames the folder into place; at last it prunes old checkpoints down to `checkpoints_total_limit`.

    Args:
        state: the `accelerate.Accelerator` or `PartialState` (for `is_main_process`, `wait_for_everyone`).
        output_dir (`str` or `os.PathLike`): where checkpoints live.
        step (`int`): the global step, for the folder name.
        save_fn (`Callable[[str], None]`): writes the state into the folder it is given.
        training_state (`dict`): JSON-serialisable run state (global step, data position, ...).
        checkpoints_total_limit (`int`, *optional*): keep at most this many complete checkpoints.

    Returns:
        `Path`: the checkpoint folder.

    Raises:
        `CheckpointWriteError`: if writing failed on any process (disk full, permissions, ...). The temporary
        folder is removed and earlier checkpoints are untouched.
    """
    output_dir = Path(output_dir)
    final = checkpoint_path(output_dir, step)
    temp = output_dir / f"{TEMP_PREFIX}{final.name}"
    error: BaseException | None = None
    if state.is_main_process and temp.exists():
        shutil.rmtree(temp, ignore_errors=True)
    state.wait_for_everyone()
    try:
        save_fn(str(temp))
    # Disk-full surfaces as OSError from Python, RuntimeError from torch.save, SafetensorError from safetensors.
    except Exception as caught:
        error = caught
    if _all_processes_succeeded(state, error is None) and state.is_main_process:
        try:
            _maybe_pause_for_tests(output_dir, step)
            manifest = {**training_state, "format_version": STATE_FORMAT_VERSION, "files": _file_sizes(temp)}
            (temp / STATE_FILENAME).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            publish_folder(temp, final)
        except Exception as caught:
            error = caught
    failed = not _all_processes_succeeded(state, error is None)
    if failed:
        if state.is_main_process:
            shutil.rmtree(temp, ignore_errors=True)
        raise CheckpointWriteError(_write_error_message(output_dir, final, error))
    if state.is_main_process:
        logger.info("Saved checkpoint %s", final)
        if checkpoints_total_limit is not None:
            prune_checkpoints(output_dir, checkpoints_total_limit, keep=final)
    state.wait_for_everyone()
    return final


def _write_error_message(output_dir: Path, final: Path, error: BaseException | None) -> str:
    reason = f"{type(error).__name__}: {error}" if error is not None else "it failed on another process"
    hint = ""
    text = str(error).lower()
    if (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or "no space left" in text:
        hint = " The disk is full: free space (or lower --checkpoints_total_limit), then resume."
    elif isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " The output directory is not writable: fix its permissions, then resume."
    complete = [path for _, path in list_checkpoints(output_dir) if path != final and check_checkpoint(path) is None]
    last = f"the last complete checkpoint is {complete[-1]}" if complete else "there is no earlier complete checkpoint"
    return (
        f"Could not write checkpoint {final} ({reason}).{hint} Nothing was overwritten: {last}; resume with "
        "--resume_from_checkpoint latest."
    )


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int, keep: Path | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most `total_limit` remain (never `keep`).

    Incomplete checkpoint folders are not counted and not deleted (they are the user's to inspect).

    Returns:
        The deleted folders.
    """
    complete = [path for _, path in list_checkpoints(output_dir) if check_checkpoint(path) is None]
    doomed = [path for path in complete[: max(0, len(complete) - total_limit)] if path != keep]
    for path in doomed:
        logger.info("Removing old checkpoint %s (--checkpoints_total_limit=%d)", path, total_limit)
        _remove_tree(path)
    return doomed


# ---------------------------------------------------------------------------------------------------------------------
# Before training: a place to write
# ---------------------------------------------------------------------------------------------------------------------
def estimate_checkpoint_bytes(model: torch.nn.Module, use_ema: bool) -> int:
    """Bytes of one checkpoint of `model` in float32: weights, AdamW's two moments, EMA weights when on."""
    num_bytes = sum(p.numel() * 4 for p in model.parameters())
    return num_bytes * (3 + (1 if use_ema else 0))


def check_output_dir(output_dir: str | os.PathLike, required_bytes: int = 0) -> None:
    """
    Make sure `output_dir` exists, is writable and has room for `required_bytes`, before training starts.

    Raises:
        `ValueError`: naming `--output_dir`, what is wrong and how to fix it.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir={str(output_dir)!r} exists and is not a directory. Fix: choose a folder.")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"--output_dir={str(output_dir)!r} cannot be created ({error.strerror or error}). Fix: choose a folder "
            "you can write to."
        ) from error
    try:
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=f"{TEMP_PREFIX}write-test-"):
            pass
    except OSError as error:
        raise ValueError(
            f"--output_dir={str(output_dir)!r} is not writable ({error.strerror or error}). Fix: choose a folder you "
            "can write to, or change its permissions."
        ) from error
    free = shutil.disk_usage(output_dir).free
    if free < required_bytes:
        raise ValueError(
            f"--output_dir={str(output_dir)!r} has {free / 2**20:.0f} MiB free, but a checkpoint and the final "
            f"pipeline need about {required_bytes / 2**20:.0f} MiB. Fix: free space or choose another folder."
        )


# ---------------------------------------------------------------------------------------------------------------------
# accelerate hooks: diffusers-format folders inside accelerate's checkpoints
# ---------------------------------------------------------------------------------------------------------------------
def register_checkpoint_hooks(accelerator, ema_model=None, model_cls: type | None = None) -> None:
    """
    Make `accelerator.save_state` / `load_state` write and read the transformer (and its EMA) as diffusers folders.

    `save_state(folder)` then writes `folder/transformer/` (config + safetensors, loadable with
    `MaskedDiTModel.from_pretrained(folder, subfolder="transformer")`) and, with `ema_model`,
    `folder/transformer_ema/` (`EMAModel.save_pretrained`, safetensors), instead of accelerate's `model.safetensors`.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator, before `load_state` is called.
        ema_model (`diffusers.training_utils.EMAModel`, *optional*): the EMA of the weights, saved and restored too.
        model_cls (`type`, *optional*): the model class; defaults to `MaskedDiTModel`.
    """
    if model_cls is None:
        from ..models import MaskedDiTModel as model_cls

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, TRANSFORMER_SUBFOLDER))
            if ema_model is not None:
                ema_model.save_pretrained(os.path.join(output_dir, EMA_SUBFOLDER))
        # The weights are saved above: stop accelerate from writing them a second time.
        weights.clear()

    def load_model_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            loaded = model_cls.from_pretrained(input_dir, subfolder=TRANSFORMER_SUBFOLDER)
            model.register_to_config(**loaded.config)
            model.load_state_dict(loaded.state_dict())
            del loaded
        if ema_model is not None:
            ema_folder = os.path.join(input_dir, EMA_SUBFOLDER)
            if not os.path.isdir(ema_folder):
                raise ValueError(
                    f"{input_dir!r} has no {EMA_SUBFOLDER}/ (it was saved without --use_ema). Fix: resume without "
                    "--use_ema, or start a new run."
                )
            # As `EMAModel.from_pretrained`, without its deprecated `from_config(path)` call.
            loaded_ema = model_cls.from_pretrained(ema_folder)
            config = model_cls.load_config(ema_folder)
            ema_state = {key: config[key] for key in EMA_STATE_KEYS if key in config}
            ema_state["shadow_params"] = [param.detach() for param in loaded_ema.parameters()]
            ema_model.load_state_dict(ema_state)
            ema_model.to(accelerator.device)
            del loaded_ema

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    training_state: dict[str, Any],
    checkpoints_total_limit: int | None = None,
) -> Path:
    """`accelerator.save_state` into `checkpoint-<step>`, atomically (see `write_checkpoint`); call on every process."""
    return write_checkpoint(
        accelerator,
        output_dir,
        step,
        lambda folder: accelerator.save_state(folder, safe_serialization=True),
        training_state,
        checkpoints_total_limit=checkpoints_total_limit,
    )


def load_checkpoint(accelerator, path: str | os.PathLike) -> dict[str, Any]:
    """Restore model, EMA, optimizer, LR schedule, scaler and RNG from checkpoint `path`; returns its training state.

    The hooks of `register_checkpoint_hooks` must be registered first.
    """
    accelerator.load_state(str(path))
    return read_training_state(path)
