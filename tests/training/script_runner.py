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
"""Helpers of the training-script tests: environment, common flags, launching (plain python or accelerate)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "train_masked_pretrain.py"
FAULTY_SCRIPT = Path(__file__).with_name("faulty_train.py")


def script_env(**extra: str) -> dict:
    env = dict(os.environ)
    # One thread per process: the same float reductions in every run, and no fight over the 2 shared cores.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra)
    return env


def base_args(data_dir: Path, model_config: Path, output_dir: Path) -> list[str]:
    """Flags of a run that takes a few seconds: 16 px, tiny model, 1-image 1-step sample grid, no TensorBoard."""
    return [
        "--train_data_dir",
        str(data_dir),
        "--resolution",
        "16",
        "--model_config",
        str(model_config),
        "--train_batch_size",
        "3",
        "--num_validation_images",
        "2",
        "--validation_inference_steps",
        "1",
        "--report_to",
        "none",
        # One thread per process, as `script_env` says; the default (all cores) is tested on its own.
        "--num_cpu_threads",
        "1",
        "--output_dir",
        str(output_dir),
    ]


# The two-process run of `test_two_processes_train_one_model` (and of `benchmarks/stress_two_processes.py`).
TWO_PROCESS_FLAGS = ["--use_ema", "--max_train_steps", "3"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(num_processes: int = 1) -> list[str]:
    """`accelerate launch`; two CPU processes need `--multi_gpu` (the script then picks the CPU itself)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--num_processes", str(num_processes)]
    if num_processes > 1:
        command += ["--multi_gpu", "--main_process_port", str(free_port())]
    return command


def run_script(
    args: list[str], env: dict | None = None, num_processes: int | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run the training script (with `python`, or `accelerate launch` when `num_processes` is given)."""
    prefix = [sys.executable] if num_processes is None else launch_command(num_processes)
    return subprocess.run(
        [*prefix, str(SCRIPT), *args],
        cwd=REPO,
        env=env or script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_script(args: list[str], log_path: Path, faults: dict | None = None) -> subprocess.Popen:
    """Start the script in the background (plain `python`, so its pid is the training process), with `faults`
    injected by `faulty_train.py`."""
    log = open(log_path, "w")
    command = [sys.executable, str(FAULTY_SCRIPT), json.dumps(faults or {}), *args]
    return subprocess.Popen(command, cwd=REPO, env=script_env(), stdout=log, stderr=subprocess.STDOUT, text=True)


def run_faulty_script(args: list[str], faults: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the script with `faults` injected by `faulty_train.py` (see there)."""
    command = [sys.executable, str(FAULTY_SCRIPT), json.dumps(faults), *args]
    return subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
    )


PIPELINE_WEIGHTS = (
    "transformer/diffusion_pytorch_model.safetensors",
    "transformer/diffusion_pytorch_model.non_ema.safetensors",
)
CHECKPOINT_WEIGHTS = (
    "transformer/diffusion_pytorch_model.safetensors",
    "transformer_ema/diffusion_pytorch_model.safetensors",
)


def max_difference(first: Path, second: Path) -> float:
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    return max((a[key] - b[key]).abs().max().item() for key in a)


def assert_same_training(run: Path, reference: Path, step: int = 6) -> None:
    """Same final pipeline (EMA and raw weights) and same last checkpoint (weights, EMA) within 1e-6."""
    for name in PIPELINE_WEIGHTS:
        assert max_difference(run / name, reference / name) <= 1e-6, name
    for name in CHECKPOINT_WEIGHTS:
        assert max_difference(run / f"checkpoint-{step}" / name, reference / f"checkpoint-{step}" / name) <= 1e-6, name


def wait_for(path: Path, process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the training process ended (exit {process.returncode}) before {path.name} appeared")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.1)
