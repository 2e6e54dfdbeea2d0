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
"""The second phase of a run, `resume`: where training starts, from a verified checkpoint of the same model. A resumed
run computes what the uninterrupted run would have: the checkpoint holds the step and the data position, accelerate
restores optimizer, schedule, scaler and RNG, and a step's random draws are `train.step_generator`'s."""

import itertools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from accelerate.utils import gather_object

from .checkpointing import (
    TRANSFORMER_SUBFOLDER,
    list_checkpoints,
    read_training_state,
    recover_interrupted_writes,
    resolve_resume_checkpoint,
    write_checkpoint,
)
from .setup import Run, _on_main


logger = get_logger(__name__)


@dataclass
class TrainingState:
    """Where a run is; saved in each checkpoint's `training_state.json`."""

    global_step: int = 0
    epoch: int = 0
    position: int = 0  # batches of `epoch` already used
    train_seconds: float = 0.0  # spent in training steps (not checkpoints, grids or FID), summed over resumes
    nonfinite_total_skipped: int = 0  # steps skipped for a NaN or inf loss or gradient norm
    nonfinite_consecutive: int = 0  # ... of them in a row, up to now
    parent: str | None = None  # the checkpoint this run's branch last resumed from or wrote: a checkpoint's lineage
    streams: list | None = None  # `--streaming`: each process's position in its part of the stream


def resume(run: Run) -> TrainingState:
    """Restore the run from `--resume_from_checkpoint` (`latest`: the newest intact checkpoint), or start at step 0; a
    `ValueError` for a named checkpoint that is missing or damaged, or one of another model than this run's."""
    if run.config.resume_from_checkpoint is None:
        return TrainingState()

    def find() -> Path | None:
        recover_interrupted_writes(run.output_dir)
        path = resolve_resume_checkpoint(run.output_dir, run.config.resume_from_checkpoint)
        if path is not None:
            step = read_training_state(path).get("global_step", 0)
            if step > run.max_train_steps:  # the model card would name fewer steps than the weights had
                raise ValueError(
                    f"--resume_from_checkpoint: {path} is at step {step}, past this run's {run.max_train_steps} "
                    f"steps. Fix: pass --max_train_steps {step} (only the export runs) or more."
                )
            abandon_later_checkpoints(run.output_dir, path)
        return path

    path = _on_main(run.accelerator, find, share=True)  # Checksums are read once, by the main process.
    if path is None:
        logger.info("--resume_from_checkpoint latest: no intact checkpoint in %s, starting afresh.", run.output_dir)
        return TrainingState()
    model_config = json.loads((path / TRANSFORMER_SUBFOLDER / "config.json").read_text(encoding="utf-8"))
    check_unchanged(path, model_config, dict(run.transformer.config), "another model than this run builds")
    saved = read_training_state(path)
    check_unchanged(path, saved.get("fixed"), _fixed_settings(run), "settings a run cannot change midway")
    try:
        run.accelerator.load_state(str(path))
    except ValueError:
        raise  # ours, one line already
    except Exception as error:  # a file its checksum vouches for that is no tensor file: a pickle is never unpickled
        first_sentence = str(error).partition("\n")[0].split(". ")[0]
        raise ValueError(
            f"--resume_from_checkpoint: {path} holds a file that cannot be loaded as tensors ({type(error).__name__}: "
            f"{first_sentence}). Fix: delete it and resume with `latest` (the checkpoint before it), or start afresh "
            "in another --output_dir."
        ) from None
    for group in run.optimizer.param_groups:  # checkpoints of earlier versions hold a foreach AdamW's settings
        group["fused"] = True
    for param, values in run.optimizer.state.items():
        values["step"] = values["step"].to(param.device, torch.float32)  # where the fused AdamW keeps it
    _apply_changed_settings(run, path, saved.get("adjustable") or {})
    saved_fields = {key: saved[key] for key in asdict(TrainingState()) if key in saved and key != "parent"}
    state = TrainingState(**saved_fields, parent=path.name)
    if state.streams:
        run.dataloader.dataset.load_state_dict(state.streams[run.accelerator.process_index])
    for key, now in _run_shape(run).items():
        if saved.get(key) != now:
            message = "Resuming with %s=%s but %s was saved with %s: training goes on, not as the original run."
            logger.warning(message, key, now, path, saved.get(key))
    logger.info(
        "Resumed from %s at step %d (epoch %d, batch %d)", path, state.global_step, state.epoch, state.position
    )
    return state


def abandon_later_checkpoints(output_dir: Path, resumed: Path) -> None:
    """Resuming from a checkpoint starts a branch: the checkpoints of later steps (an abandoned branch, or damaged
    ones `latest` skipped) are moved aside to `abandoned-checkpoint-<step>`, so that `latest` and
    `--checkpoints_total_limit`, which go by step, follow this branch. Nothing is deleted."""
    step = int(resumed.name.rpartition("-")[2])
    later = [path for path in list_checkpoints(output_dir) if int(path.name.rpartition("-")[2]) > step]
    for path in later:
        target = path.with_name(f"abandoned-{path.name}")
        for copy in itertools.count(2):
            if not target.exists():
                break
            target = path.with_name(f"abandoned-{path.name}-{copy}")
        os.rename(path, target)
    if later:
        logger.warning(
            "Resuming from %s abandons the later checkpoints of the run it branches from (%s): moved aside to "
            "abandoned-checkpoint-<step>; delete them when they are no longer needed.",
            resumed.name,
            ", ".join(path.name for path in later),
        )


def _fixed_settings(run: Run) -> dict:
    """What a checkpoint fixes: a resume that changes one of them is refused (it would go on with another objective or
    noise schedule, other latents, other data, or without the EMA it has)."""
    config, schedule = run.config, run.noise_scheduler.config
    data_dir = str(Path(config.train_data_dir).resolve()) if config.train_data_dir else None
    return {
        **{key: schedule[key] for key in ("prediction_type", "beta_schedule", "num_train_timesteps")},
        **{key: schedule[key] for key in ("beta_start", "beta_end")},
        "vae": [config.vae_name_or_path, config.vae_subfolder],
        "data": [config.dataset_name, config.dataset_config_name, data_dir, config.image_column, config.resolution],
        "images": "streamed" if config.streaming else len(run.dataloader.dataset),
        # a stream is split into a part per process and DataLoader worker: another split has other positions
        "stream_parts": [run.accelerator.num_processes, run.dataloader.num_workers] if config.streaming else None,
        "use_ema": run.ema_model is not None,
    }


def check_unchanged(checkpoint: Path, saved: dict | None, now: dict, what: str) -> None:
    """Refuse, with a `ValueError` showing each difference, to resume `checkpoint` when a value it recorded differs from
    this run's (`what` they are: the model's config, or the settings a run fixes). Keys one side lacks, and diffusers'
    private `_` keys, are not compared: checkpoints of earlier versions record no settings."""
    now = json.loads(json.dumps(now))  # Tuples as lists, as in the file.
    saved = saved or {}
    differences = [
        f"{key}={saved[key]!r} in the checkpoint, {now[key]!r} in this run"
        for key in sorted(saved.keys() & now.keys())
        if not key.startswith("_") and saved[key] != now[key]
    ]
    if differences:
        raise ValueError(
            f"--resume_from_checkpoint: {checkpoint} holds {what} ({'; '.join(differences)}). Fix: resume with the "
            "flags of the run that wrote it, or start afresh in another --output_dir."
        )


def _adjustable_settings(run: Run) -> dict:
    """Settings a resumed run may change: the checkpoint's optimizer and EMA state hold the old values, so the new
    ones are applied after loading it, and said."""
    config = run.config
    keys = ("learning_rate", "adam_beta1", "adam_beta2", "adam_weight_decay", "ema_decay")
    return {key: getattr(config, key) for key in keys}


def _apply_changed_settings(run: Run, checkpoint: Path, saved: dict) -> None:
    now = _adjustable_settings(run)
    changed = {key: (saved[key], value) for key, value in now.items() if key in saved and saved[key] != value}
    if not changed:
        return
    optimizer, scheduler = run.optimizer.optimizer, run.lr_scheduler.scheduler  # under accelerate's wrappers
    config = run.config
    scheduler.base_lrs = [config.learning_rate] * len(scheduler.base_lrs)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group.update(initial_lr=config.learning_rate, lr=config.learning_rate * factor(scheduler.last_epoch))
        group["betas"] = (config.adam_beta1, config.adam_beta2)
        group["weight_decay"] = config.adam_weight_decay if group.get("decay") else 0.0
    if run.ema_model is not None:
        run.ema_model.decay = config.ema_decay
    logger.warning(
        "Resuming %s with %s: applied from this step on.",
        checkpoint.name,
        ", ".join(f"--{key}={new} (it had {old})" for key, (old, new) in changed.items()),
    )


def _run_shape(run: Run) -> dict:
    """Settings that change what a resumed run computes: a difference is allowed, and warned of."""
    return {
        "num_processes": run.accelerator.num_processes,
        "train_batch_size": run.config.train_batch_size,
        "gradient_accumulation_steps": run.config.gradient_accumulation_steps,
        "seed": run.config.seed,
    }


def save_training_checkpoint(run: Run, state: TrainingState) -> Path:
    """Checkpoint the run at `state.global_step` with what `resume` needs; call on every process."""
    settings = {"fixed": _fixed_settings(run), "adjustable": _adjustable_settings(run)}
    if run.config.streaming:  # every process's position, kept by the main one
        state.streams = gather_object([run.dataloader.dataset.state_dict()])
    training_state, limit = {**asdict(state), **_run_shape(run), **settings}, run.config.checkpoints_total_limit
    path = write_checkpoint(
        run.accelerator, run.output_dir, state.global_step, run.accelerator.save_state, training_state, limit
    )
    state.parent = path.name
    return path
