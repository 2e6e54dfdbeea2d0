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
"""Nothing lost, nothing silently wrong: one run per folder, checkpoints verified by content, configs that cannot
drift, the Hub checked before training, the `python -m` entry point."""

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import types

import pytest
import torch
from accelerate import PartialState
from diffusers import DDPMScheduler
from script_runner import REPO, assert_ok, base_args, run_script, script_env, start_script
from test_train_script import wait_for

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel
from diffusers_maskdm.models.masked_dit import check_config_fingerprint
from diffusers_maskdm.training.export import save_pipeline


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def test_two_trainings_into_one_folder_at_once(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path / "out") + ["--max_train_steps", "4"]
    first = start_script(args, tmp_path / "first.log", faults={"pause_at_step": 2})
    try:
        wait_for(tmp_path / "out" / ".test-paused-step-2", first)
        message = one_line_error(run_script(args))
        assert f"--output_dir={str(tmp_path / 'out')!r} is in use by another training run" in message
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    # The OS dropped the killed run's lock: the folder can be resumed now.
    assert_ok(run_script(args + ["--resume_from_checkpoint", "latest"]))


def flip_one_bit(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_fsdp_and_deepspeed_are_refused_before_any_work(image_dir, tiny_config, tmp_path, variable):
    # What `accelerate launch --use_fsdp` / `--use_deepspeed` set for the script.
    args = base_args(image_dir, tiny_config, tmp_path / "out") + ["--max_train_steps", "1"]
    message = one_line_error(run_script(args, env=script_env(**{variable: "true"})))
    assert "which this training does not support: it trains with DDP" in message and "--multi_gpu" in message
    assert not (tmp_path / "out").exists()


def test_a_file_system_without_locks_is_named_with_the_way_out(tmp_path, image_dir, monkeypatch):
    import errno

    from diffusers_maskdm.training import parse_args, setup

    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(setup.fcntl, "flock", no_locks)  # as on Lustre and some NFS mounts
    config = parse_args(["--train_data_dir", str(image_dir), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="on a file system without file locks .*Fix: choose an --output_dir"):
        setup.claim_output_dir(config)


def test_a_forked_worker_that_outlives_its_run_does_not_hold_the_folder(tmp_path, image_dir):
    import multiprocessing
    import time

    from diffusers_maskdm.training import parse_args, setup

    config = parse_args(["--train_data_dir", str(image_dir), "--output_dir", str(tmp_path / "out")])
    lock = setup.claim_output_dir(config)
    context = multiprocessing.get_context("fork")  # as DataLoader's workers
    started = context.Event()

    def work():
        started.set()
        time.sleep(60)

    worker = context.Process(target=work)
    worker.start()
    try:
        assert started.wait(60)  # the child runs (fork's handlers are done)
        lock.close()  # as when the run is killed and its worker lives on for a few seconds
        setup.claim_output_dir(config).close()  # the resume gets the folder
    finally:
        worker.kill()
        worker.join()


def test_a_flipped_bit_in_a_checkpoint_is_refused_and_latest_falls_back(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + ["--checkpointing_steps", "2"]
    assert_ok(run_script(args + ["--max_train_steps", "4"]))
    flip_one_bit(tmp_path / "checkpoint-4" / "transformer" / "diffusion_pytorch_model.safetensors")

    message = one_line_error(run_script(args + ["--max_train_steps", "5", "--resume_from_checkpoint", "checkpoint-4"]))
    assert "'checkpoint-4' cannot be resumed from" in message
    assert "transformer/diffusion_pytorch_model.safetensors does not match its checksum" in message

    result = run_script(args + ["--max_train_steps", "5", "--resume_from_checkpoint", "latest"])
    assert_ok(result)
    log = result.stdout + result.stderr
    assert "Skipping damaged checkpoint" in log and "checkpoint-4" in log
    assert "checkpoint-2 at step 2" in log


def test_resuming_with_other_model_flags_or_a_fresh_run_into_checkpoints_is_refused(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path / "out") + ["--max_train_steps", "2"]
    assert_ok(run_script(args))
    # 4 heads over a 2-head checkpoint: the same weight shapes, another network.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(tiny_config.read_text()), "num_attention_heads": 4}))
    changed = [str(other) if value == str(tiny_config) else value for value in args]
    message = one_line_error(run_script(changed + ["--max_train_steps", "3", "--resume_from_checkpoint", "latest"]))
    assert (
        "holds another model than this run builds (num_attention_heads=2 in the checkpoint, 4 in this run)" in message
    )

    message = one_line_error(run_script(args + ["--max_train_steps", "3"]))
    assert "holds another run's checkpoints or model (checkpoint-2, model_index.json)" in message
    assert "--overwrite_output_dir" in message
    assert_ok(run_script(args + ["--max_train_steps", "1", "--overwrite_output_dir", "--checkpointing_steps", "1"]))
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-1"]


def test_a_resume_refuses_settings_a_run_cannot_change_and_applies_the_others(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + ["--checkpointing_steps", "2", "--use_ema"]
    assert_ok(run_script(args + ["--max_train_steps", "2", "--learning_rate", "1e-4"]))
    resume = ["--max_train_steps", "3", "--resume_from_checkpoint", "latest"]
    for changed, words in (
        (["--prediction_type", "sample"], "prediction_type='epsilon' in the checkpoint, 'sample' in this run"),
        (["--ddpm_beta_schedule", "squaredcos_cap_v2"], "beta_schedule='linear' in the checkpoint"),
    ):
        message = one_line_error(run_script(args + resume + ["--learning_rate", "1e-4", *changed]))
        assert "holds settings a run cannot change midway" in message and words in message
    # Without --use_ema the EMA would be dropped without a word.
    message = one_line_error(run_script([a for a in args if a != "--use_ema"] + resume + ["--learning_rate", "1e-4"]))
    assert "use_ema=True in the checkpoint, False in this run" in message
    # A new learning rate and EMA decay are applied (the checkpoint's optimizer and EMA hold the old ones), and said.
    result = run_script(args + resume + ["--learning_rate", "3e-4", "--ema_decay", "0.99"])
    assert_ok(result)
    assert "--learning_rate=0.0003 (it had 0.0001), --ema_decay=0.99 (it had 0.9999)" in result.stderr
    optimizer = torch.load(tmp_path / "checkpoint-3" / "optimizer.bin", weights_only=True)
    assert {group["initial_lr"] for group in optimizer["param_groups"]} == {3e-4}
    state = json.loads((tmp_path / "checkpoint-3" / "training_state.json").read_text())
    assert state["adjustable"]["learning_rate"] == 3e-4 and state["fixed"]["use_ema"] is True


def test_a_finished_model_is_never_overwritten(image_dir, tiny_config, tmp_path):
    # A finished run whose checkpoints were deleted to save space still holds its model.
    args = base_args(image_dir, tiny_config, tmp_path / "out") + ["--max_train_steps", "1"]
    assert_ok(run_script(args))
    for checkpoint in (tmp_path / "out").glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    weights = (tmp_path / "out" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    message = one_line_error(run_script(args))
    assert "holds another run's checkpoints or model (model_index.json)" in message
    # Nor is the model a run fine-tunes from: the source is never the output.
    source = ["--pretrained_model_name_or_path", str(tmp_path / "out")]
    result = run_script(args[:4] + args[6:] + source)  # without --model_config: a flag error, exit status 2
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--pretrained_model_name_or_path and --output_dir are the same folder" in result.stderr
    assert (tmp_path / "out" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == weights


def test_resuming_an_earlier_checkpoint_starts_a_branch_that_latest_and_pruning_follow(
    image_dir, tiny_config, tmp_path
):
    args = base_args(image_dir, tiny_config, tmp_path) + ["--checkpointing_steps", "2"]
    assert_ok(run_script(args + ["--max_train_steps", "6"]))
    # Back to step 2 (as after a bad turn), on to step 4: the old branch's checkpoint-4 and -6 are set aside.
    result = run_script(args + ["--max_train_steps", "4", "--resume_from_checkpoint", "checkpoint-2"])
    assert_ok(result)
    assert "abandons the later checkpoints of the run it branches from (checkpoint-4, checkpoint-6)" in result.stderr
    names = sorted(p.name for p in tmp_path.glob("*checkpoint-*"))
    assert names == ["abandoned-checkpoint-4", "abandoned-checkpoint-6", "checkpoint-2", "checkpoint-4"]
    assert json.loads((tmp_path / "checkpoint-4" / "training_state.json").read_text())["parent"] == "checkpoint-2"
    # `latest` and --checkpoints_total_limit follow the new branch, not the highest step ever written.
    result = run_script(
        args + ["--max_train_steps", "6", "--resume_from_checkpoint", "latest", "--checkpoints_total_limit", "1"]
    )
    assert_ok(result)
    assert "checkpoint-4 at step 4" in result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-6"]
    assert json.loads((tmp_path / "checkpoint-6" / "training_state.json").read_text())["parent"] == "checkpoint-4"


def test_a_resume_below_its_checkpoint_or_of_a_pickled_file_is_refused_in_one_line(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + ["--resume_from_checkpoint", "latest"]
    assert_ok(run_script(args[:-2] + ["--max_train_steps", "2"]))
    # The model card would name fewer steps than the weights had.
    message = one_line_error(run_script(args + ["--max_train_steps", "1"]))
    assert "checkpoint-2 is at step 2, past this run's 1 steps. Fix: pass --max_train_steps 2" in message
    # A pickle of objects where the optimizer's tensors were, its checksum recorded (as by a tool that rewrote the
    # checkpoint): torch loads it with weights_only, so it is refused, in one line, and never run.
    checkpoint, ran = tmp_path / "checkpoint-2", tmp_path / "the-pickle-ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(ran),)

    (checkpoint / "optimizer.bin").write_bytes(pickle.dumps(Payload()))
    state = json.loads((checkpoint / "training_state.json").read_text())
    del state["state_sha256"]
    state["sha256"]["optimizer.bin"] = hashlib.sha256((checkpoint / "optimizer.bin").read_bytes()).hexdigest()
    state["state_sha256"] = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
    (checkpoint / "training_state.json").write_text(json.dumps(state))
    message = one_line_error(run_script(args + ["--max_train_steps", "3"]))
    assert "checkpoint-2 holds a file that cannot be loaded as tensors (UnpicklingError: Weights only" in message
    assert not ran.exists()


def test_a_full_disk_while_exporting_keeps_the_old_pipeline_and_a_retry_is_not_refused(
    tmp_path, image_dir, monkeypatch
):
    from diffusers_maskdm import caching
    from diffusers_maskdm.training import CheckpointWriteError, parse_args, setup

    transformer = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)
    scheduler, options = DDPMScheduler(num_train_timesteps=10), dict(grid_options=(1, 1, 0, "ddpm"))
    save_pipeline(tmp_path, transformer, scheduler, **options)
    files = sorted(tmp_path.rglob("*"))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(caching, "save_file", disk_full)  # where the weights are rewritten with their config
    with pytest.raises(CheckpointWriteError) as info:
        save_pipeline(tmp_path, transformer, scheduler, **options)
    assert f"Could not write the pipeline into {tmp_path} (OSError: [Errno 28] No space left on device). The " in (
        str(info.value)
    )
    assert "disk is full: free space, then run again with --resume_from_checkpoint latest" in str(info.value)
    assert sorted(tmp_path.rglob("*")) == files  # nothing staged is left, the pipeline written before is whole
    monkeypatch.undo()
    MaskedDDPMPipeline.from_pretrained(tmp_path)

    # The retry resumes the last step: it writes the pipeline, no checkpoint, so it asks room for that only.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(free=10 * 2**20))
    (tmp_path / "out" / "checkpoint-4").mkdir(parents=True)
    flags = ["--train_data_dir", str(image_dir), "--output_dir", str(tmp_path / "out")]
    retry = flags + ["--resume_from_checkpoint", "latest", "--max_train_steps"]
    setup.claim_output_dir(parse_args(retry + ["4"]), 16 * 2**20).close()
    with pytest.raises(ValueError, match="has 10 MiB free, but a checkpoint and the final pipeline need about 16 MiB"):
        setup.claim_output_dir(parse_args(retry + ["5"]), 16 * 2**20)
    # A fresh run with --overwrite_output_dir counts the room of the checkpoints it deletes.
    with open(tmp_path / "out" / "checkpoint-4" / "optimizer.bin", "wb") as file:
        file.truncate(8 * 2**20)
    PartialState(cpu=True)  # for the warning that names the deleted checkpoint
    setup.claim_output_dir(parse_args(flags + ["--overwrite_output_dir"]), 16 * 2**20).close()
    assert not (tmp_path / "out" / "checkpoint-4").exists()


def test_a_saved_pipeline_records_its_config_with_its_weights(tmp_path):
    transformer = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)
    save_pipeline(tmp_path, transformer, DDPMScheduler(num_train_timesteps=10), grid_options=(1, 1, 0, "ddpm"))
    check_config_fingerprint(tmp_path / "transformer")  # as saved: accepted
    config_file = tmp_path / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "num_attention_heads": 4, "use_long_skip": False}))
    with pytest.raises(ValueError) as info:
        check_config_fingerprint(tmp_path / "transformer")
    assert "num_attention_heads=4 in config.json, 2 with the weights" in str(info.value)
    assert "use_long_skip=False in config.json" in str(info.value)
    # Loading refuses it too, alone or as a pipeline's component: the weights would go into another network.
    with pytest.raises(ValueError, match="num_attention_heads=4 in config.json, 2 with the weights"):
        MaskedDiTModel.from_pretrained(tmp_path, subfolder="transformer")
    with pytest.raises(ValueError, match="num_attention_heads=4 in config.json, 2 with the weights"):
        MaskedDDPMPipeline.from_pretrained(tmp_path)
    config_file.write_text(json.dumps(config))  # restored: loads again
    assert torch.isfinite(MaskedDDPMPipeline.from_pretrained(tmp_path).transformer.proj_out.weight).all()


@pytest.mark.parametrize("hub_state", ["offline", "unauthorised"])
def test_push_to_hub_is_checked_before_training_and_leaves_nothing(image_dir, tiny_config, tmp_path, hub_state):
    from hub_server import LoopbackHub

    output_dir = tmp_path / "out"
    args = base_args(image_dir, tiny_config, output_dir) + ["--max_train_steps", "2", "--push_to_hub"]
    with LoopbackHub(max_lifetime_s=120) as hub:
        env = script_env(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf_home"))
        if hub_state == "unauthorised":  # online, but without a token the Hub refuses to create a repo
            env.pop("HF_HUB_OFFLINE")
            env.pop("HF_TOKEN", None)
        message = one_line_error(run_script(args + ["--hub_model_id", "test-user/m"], env=env))
    assert message.startswith("error: --push_to_hub: the Hub repo 'test-user/m' could not be created")
    assert "Nothing was trained" in message
    assert not output_dir.exists()  # a refused run leaves nothing behind


def test_resuming_a_missing_checkpoint_into_a_new_folder_leaves_nothing(image_dir, tiny_config, tmp_path):
    from diffusers_maskdm.training import config_from_flags
    from diffusers_maskdm.training.setup import setup

    output_dir = tmp_path / "out"
    flags = base_args(image_dir, tiny_config, output_dir) + ["--resume_from_checkpoint", "checkpoint-9"]
    with pytest.raises(ValueError, match="'checkpoint-9' does not exist"):
        setup(config_from_flags(flags))
    assert not output_dir.exists()  # no folder, no lock file


def test_python_m_entry_point_trains_and_shows_defaults_and_progress(image_dir, tiny_config, tmp_path):
    command = [sys.executable, "-m", "diffusers_maskdm.train"]
    help_text = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "--train_batch_size TRAIN_BATCH_SIZE" in help_text and "(default: 16)" in help_text
    args = base_args(image_dir, tiny_config, tmp_path) + ["--max_train_steps", "2", "--validation_steps", "1"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, cwd=REPO, env=script_env())
    assert_ok(result)
    assert (tmp_path / "model_index.json").is_file()
    assert "Sample grid" in result.stderr  # the sample grids show their progress
