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
"""End-to-end tests of examples/train_masked_pretrain.py: stages, resume, kills, loss guard, several processes.

Each run is a tiny model on 8 images of 16x16 for a few steps (seconds). Runs that are compared with each other use
one thread per process, so their float reductions are the same.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from script_runner import (
    PIPELINE_WEIGHTS,
    REPO,
    SCRIPT,
    TWO_PROCESS_FLAGS,
    assert_ok,
    assert_same_training,
    base_args,
    free_port,
    max_difference,
    run_faulty_script,
    run_script,
    script_env,
    start_script,
    wait_for,
)


# A run that exercises everything resuming must restore: accumulation across epoch ends (8 images, batches of 3),
# random flips, EMA, a warm-up schedule.
RESUME_FLAGS = [
    "--gradient_accumulation_steps",
    "2",
    "--random_flip",
    "--use_ema",
    "--lr_scheduler",
    "constant_with_warmup",
    "--lr_warmup_steps",
    "2",
    "--checkpointing_steps",
    "2",
]


@pytest.fixture(scope="module")
def straight_run(image_dir, tiny_config, tmp_path_factory) -> Path:
    """Six steps without interruption: the reference of the resume and kill tests."""
    output_dir = tmp_path_factory.mktemp("straight")
    assert_ok(run_script(base_args(image_dir, tiny_config, output_dir) + RESUME_FLAGS + ["--max_train_steps", "6"]))
    return output_dir


def test_pretrain_then_finetune_through_accelerate_launch(image_dir, tmp_path):
    from diffusers_maskdm import MaskedDDPMPipeline

    pretrained = tmp_path / "pretrained"
    args = base_args(image_dir, Path("unused"), pretrained)
    args = [a for a in args if a not in ("--model_config", "unused")]
    args[args.index("--report_to") + 1] = "tensorboard"
    result = run_script(
        args + ["--model_preset", "tiny", "--use_ema", "--max_train_steps", "4", "--validation_steps", "2"],
        num_processes=1,
    )
    assert_ok(result)

    # The output folder is a pipeline with EMA weights, the raw weights beside them, a card and sample grids.
    for name in ("model_index.json", "README.md", "samples.png", "samples/step-000002.png", *PIPELINE_WEIGHTS):
        assert (pretrained / name).is_file(), name
    assert (
        max_difference(
            pretrained / PIPELINE_WEIGHTS[0],
            pretrained / "checkpoint-4/transformer_ema/diffusion_pytorch_model.safetensors",
        )
        == 0
    )
    assert (
        max_difference(
            pretrained / PIPELINE_WEIGHTS[1],
            pretrained / "checkpoint-4/transformer/diffusion_pytorch_model.safetensors",
        )
        == 0
    )
    card = (pretrained / "README.md").read_text()
    assert "masked pre-training" in card and "88%" in card  # 90 % of 16 blocks of 2x2 patches: 14 of 16 masked
    pipeline = MaskedDDPMPipeline.from_pretrained(pretrained)
    assert pipeline.transformer.config.hidden_size == 128  # the tiny preset
    assert pipeline(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 16, 16, 3)

    # TensorBoard got the loss, the learning rate, the mask rate and the throughput.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(pretrained / "logs" / "train_masked_pretrain"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in ("train/loss", "train/lr", "train/mask_rate", "perf/images_per_s", "perf/tokens_per_s"):
        assert tag in tags, tags
    assert accumulator.Scalars("train/mask_rate")[0].value == pytest.approx(0.875)

    finetuned = tmp_path / "finetuned"
    args = base_args(image_dir, Path("unused"), finetuned)
    args = [a for a in args if a not in ("--model_config", "unused")]
    result = run_script(
        args
        # No --mask_rate: from a pre-trained model, the default is fine-tuning on full images.
        + ["--pretrained_model_name_or_path", str(pretrained), "--init_from_ema"]
        + ["--max_train_steps", "2"],
        num_processes=1,
    )
    assert_ok(result)
    assert "Starting from the EMA weights" in result.stderr + result.stdout
    card = (finetuned / "README.md").read_text()
    assert "fine-tuning on full images" in card
    # A local starting point is never written into the card (it means nothing on the Hub).
    assert str(pretrained) not in card and "a local checkpoint" in card
    config = json.loads((finetuned / "transformer/config.json").read_text())
    assert config["hidden_size"] == 128 and config["sample_size"] == 16


def test_grayscale_data_trains_a_one_channel_model(gray_dir, tiny_config, tmp_path):
    assert_ok(run_script(base_args(gray_dir, tiny_config, tmp_path) + ["--max_train_steps", "2"]))
    config = json.loads((tmp_path / "transformer/config.json").read_text())
    assert config["in_channels"] == 1


def test_class_subfolders_train_a_class_conditional_model(labelled_dir, tiny_config, tmp_path):
    from diffusers_maskdm import MaskedDDPMPipeline

    assert_ok(run_script(base_args(labelled_dir, tiny_config, tmp_path) + ["--max_train_steps", "2"]))
    pipeline = MaskedDDPMPipeline.from_pretrained(tmp_path)
    assert pipeline.transformer.config.num_class_embeds == 2
    images = pipeline(class_labels=[0, 1], guidance_scale=2.0, num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 16, 16, 3)
    # --ignore_labels trains an unconditional model on the same folder.
    assert_ok(
        run_script(
            base_args(labelled_dir, tiny_config, tmp_path / "u") + ["--max_train_steps", "1", "--ignore_labels"]
        )
    )
    assert json.loads((tmp_path / "u/transformer/config.json").read_text())["num_class_embeds"] is None


def test_corrupt_file_is_skipped_and_reported(corrupt_dir, tiny_config, tmp_path):
    result = run_script(base_args(corrupt_dir, tiny_config, tmp_path) + ["--max_train_steps", "2"])
    assert_ok(result)
    log = result.stdout + result.stderr
    assert "broken.png" in log or "Skipping unreadable image" in log
    assert "unreadable files skipped: 1" in log
    assert "Images = 6" in log


def test_two_processes_train_one_model(image_dir, tiny_config, tmp_path):
    result = run_script(base_args(image_dir, tiny_config, tmp_path) + TWO_PROCESS_FLAGS, num_processes=2)
    assert_ok(result)
    log = result.stdout + result.stderr
    assert "Num processes: 2" in log and "Process group: 2 processes, timeout 1800 s (--ddp_timeout)" in log
    assert "The weights are identical on all 2 processes." in log
    assert log.count("Saved the MaskedDDPMPipeline") == 1
    assert (tmp_path / "checkpoint-3/random_states_1.pkl").is_file()
    assert json.loads((tmp_path / "checkpoint-3/training_state.json").read_text())["num_processes"] == 2


def test_two_machines_on_localhost_train_one_model(image_dir, tiny_config, tmp_path):
    # The multi-node command of docs/training.md, one process on each of two "machines" (two launchers on localhost).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2"]
    launch += ["--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    script = [str(SCRIPT), *base_args(image_dir, tiny_config, tmp_path), "--max_train_steps", "2"]
    launchers = [
        subprocess.Popen([*launch, "--machine_rank", str(rank), *script], cwd=REPO, env=script_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]  # fmt: skip
    logs = [launcher.communicate(timeout=240)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "The weights are identical on all 2 processes." in logs[0]
    assert json.loads((tmp_path / "checkpoint-2/training_state.json").read_text())["num_processes"] == 2


def test_resume_gives_the_same_weights(straight_run, image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + RESUME_FLAGS
    assert_ok(run_script(args + ["--max_train_steps", "3"]))
    result = run_script(args + ["--max_train_steps", "6", "--resume_from_checkpoint", "latest"])
    assert_ok(result)
    assert "Resumed from" in result.stderr + result.stdout
    assert_same_training(tmp_path, straight_run)


def test_killed_during_a_step_resumes_to_the_same_weights(straight_run, image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + RESUME_FLAGS + ["--max_train_steps", "6"]
    process = start_script(args, tmp_path / "killed.log", faults={"pause_at_step": 3})
    wait_for(tmp_path / ".test-paused-step-3", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "checkpoint-4").exists() and not (tmp_path / "model_index.json").exists()

    result = run_script(args + ["--resume_from_checkpoint", "latest"])
    assert_ok(result)
    assert "checkpoint-2 at step 2" in result.stderr + result.stdout
    assert_same_training(tmp_path, straight_run)


def test_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(
    straight_run, image_dir, tiny_config, tmp_path
):
    args = base_args(image_dir, tiny_config, tmp_path) + RESUME_FLAGS + ["--max_train_steps", "6"]
    process = start_script(args, tmp_path / "killed.log", faults={"pause_in_checkpoint": 4})
    wait_for(tmp_path / ".test-paused-checkpoint-4", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # The half-written checkpoint exists only under its temporary name.
    assert (tmp_path / ".tmp-checkpoint-4").is_dir()
    assert not (tmp_path / "checkpoint-4").exists()

    result = run_script(args + ["--resume_from_checkpoint", "latest"])
    assert_ok(result)
    log = result.stderr + result.stdout
    assert "interrupted" in log and "checkpoint-2 at step 2" in log
    assert not (tmp_path / ".tmp-checkpoint-4").exists()
    assert_same_training(tmp_path, straight_run)


@pytest.mark.parametrize("nonfinite_steps", [[], [13]])
def test_a_step_reads_the_device_only_at_logging_steps(image_dir, tiny_config, tmp_path, nonfinite_steps):
    # On a GPU each read of a tensor's value waits for every queued kernel: 20 masked steps read it twice, once per
    # --logging_steps, besides what the one checkpoint (at the last step) reads; a NaN loss is skipped on the device
    # and reported at the next logging step.
    args = base_args(image_dir, tiny_config, tmp_path) + ["--max_train_steps", "20", "--logging_steps", "10"]
    args += ["--mask_rate", "0.75", "--checkpointing_steps", "100", "--use_ema"]
    result = run_faulty_script(args, faults={"count_host_reads": True, "nonfinite_steps": nonfinite_steps})
    assert_ok(result)
    reads = json.loads((tmp_path / ".test-host-reads.json").read_text())
    assert reads["steps"] == [[10, "tolist"], [20, "tolist"]] and reads["checkpoints"] == 1
    state = json.loads((tmp_path / "checkpoint-20/training_state.json").read_text())
    assert state["nonfinite_total_skipped"] == len(nonfinite_steps)
    warned = "Step 20: 1 of the last 10 steps skipped" in result.stdout + result.stderr
    assert warned == bool(nonfinite_steps)


def test_loss_guard_skips_then_stops_after_saving(image_dir, tiny_config, tmp_path):
    args = base_args(image_dir, tiny_config, tmp_path) + ["--logging_steps", "1"]
    args += ["--max_train_steps", "10", "--checkpointing_steps", "4", "--max_consecutive_nonfinite_steps", "3"]
    result = run_faulty_script(args, faults={"nonfinite_steps": [2], "nonfinite_from": 5})
    assert result.returncode == 1, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "Step 2: 1 of the last 1 steps skipped" in log  # skipped once, then training went on
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert message.startswith("error: Stopping at step 7")
    assert "steps 5 to 7" in message and "--learning_rate" in message and "checkpoint-7" in message
    assert "Traceback" not in result.stderr
    # Saved before stopping, and the skipped steps changed nothing: the weights are those of step 4.
    state = json.loads((tmp_path / "checkpoint-7/training_state.json").read_text())
    assert state["nonfinite_total_skipped"] == 4 and state["global_step"] == 7
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert max_difference(tmp_path / "checkpoint-7" / weights, tmp_path / "checkpoint-4" / weights) == 0
    assert not (tmp_path / "model_index.json").exists()


def test_bad_flag_exits_before_training(image_dir, tiny_config, tmp_path):
    output_dir = tmp_path / "out"
    result = run_script(base_args(image_dir, tiny_config, output_dir) + ["--mask_block_size", "3"])
    assert result.returncode == 1  # checked against the model's patch grid, before the data is read
    assert "--mask_block_size" in result.stderr and "Traceback" not in result.stderr
    assert not output_dir.exists()  # a refused run leaves nothing behind
    result = run_script(base_args(image_dir, tiny_config, output_dir) + ["--mask_block_size", "0"])
    assert result.returncode == 2 and "--mask_block_size=0 must be a positive integer" in result.stderr
    assert not output_dir.exists()


def test_model_and_data_mismatch_exits_before_training(straight_run, gray_dir, tmp_path):
    # An RGB model fine-tuned on data forced to one channel.
    args = base_args(gray_dir, Path("unused"), tmp_path)
    args = [a for a in args if a not in ("--model_config", "unused")]
    result = run_script(
        args + ["--pretrained_model_name_or_path", str(straight_run), "--mask_rate", "0", "--num_channels", "1"]
    )
    assert result.returncode == 1
    assert "--num_channels 3" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("checkpoint-*"))


def test_empty_data_dir_exits_before_training(tiny_config, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script(base_args(empty, tiny_config, tmp_path / "out"))
    assert result.returncode == 1
    assert "train_data_dir" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_fid_is_computed_during_training(image_dir, tiny_config, tmp_path):
    from diffusers_maskdm.evaluation import find_fid_helper_inception

    try:
        find_fid_helper_inception()
    except Exception as error:  # the offline Inception is an optional download
        pytest.skip(f"no offline Inception: {error}")
    args = base_args(image_dir, tiny_config, tmp_path / "out")
    args += ["--max_train_steps", "2", "--eval_fid_steps", "2", "--eval_fid_num_images", "4"]
    result = run_script(args, env=script_env(DIFFUSERS_MASKDM_CACHE=str(tmp_path / "cache")))
    assert_ok(result)
    assert "Step 2: FID-4 = " in result.stdout + result.stderr


def test_push_to_hub_then_finetune_from_the_repo_id(image_dir, tiny_config, tmp_path):
    from hub_server import LoopbackHub

    repo_id = "test-user/maskdm-tiny"
    with LoopbackHub(max_lifetime_s=200) as hub:
        env = script_env(
            HF_ENDPOINT=hub.endpoint,
            HF_TOKEN="hf_loopback_test_token",
            HF_HOME=str(tmp_path / "hf_home"),
            HF_HUB_CACHE=str(tmp_path / "hf_home" / "hub"),
        )
        env.pop("HF_HUB_OFFLINE")
        pushed = tmp_path / "pushed"
        args = base_args(image_dir, tiny_config, pushed) + ["--use_ema", "--max_train_steps", "2"]
        assert_ok(run_script(args + ["--push_to_hub", "--hub_model_id", repo_id], env=env))
        files = hub.files(repo_id)
        for name in (
            "model_index.json",
            "README.md",
            "samples.png",
            "scheduler/scheduler_config.json",
            *PIPELINE_WEIGHTS,
        ):
            assert name in files, sorted(files)
        assert not [name for name in files if name.startswith(("checkpoint-", "logs", "samples/", ".tmp"))]
        assert "masked pre-training" in files["README.md"].decode()

        finetuned = tmp_path / "finetuned"
        args = base_args(image_dir, Path("unused"), finetuned)
        args = [a for a in args if a not in ("--model_config", "unused")]
        args += ["--pretrained_model_name_or_path", repo_id, "--mask_rate", "0", "--max_train_steps", "1"]
        assert_ok(run_script(args, env=env))
        assert f"base_model: {repo_id}" in (finetuned / "README.md").read_text()
        assert (
            max_difference(
                pushed / "checkpoint-2/transformer/diffusion_pytorch_model.safetensors",
                Path(env["HF_HUB_CACHE"])
                .glob("models--test-user--maskdm-tiny/snapshots/*/" + PIPELINE_WEIGHTS[1])
                .__next__(),
            )
            == 0
        )  # the raw weights were fetched, as without --init_from_ema
    assert hub.unhandled == []
