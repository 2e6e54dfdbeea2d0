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
"""CPU runs use every core they are given, and bf16 (where the CPU has it) trains and samples like fp32."""

import os
import re
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import DDPMScheduler
from script_runner import assert_ok, base_args, run_script, script_env

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel
from diffusers_maskdm.training import diffusion_loss, make_diffusion_inputs, preset_config, step_generator
from diffusers_maskdm.training.args import config_from_flags
from diffusers_maskdm.training.setup import (
    _check_model_plan,
    cpu_supports_bf16,
    cpu_threads_per_process,
    dataloader_options,
)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    x86, arm, old = tmp_path / "x86", tmp_path / "arm", tmp_path / "old"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    old.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_supports_bf16(x86) and cpu_supports_bf16(arm)
    assert not cpu_supports_bf16(old)
    assert not cpu_supports_bf16(tmp_path / "missing")


def test_threads_are_the_allowed_cpus_shared_by_the_local_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert [cpu_threads_per_process(n) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]


def test_data_loading_keeps_up_with_a_gpu_and_leaves_the_cpu_cores_to_training(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    # On a GPU: a share of the CPUs per local process (at most 8), pinned memory; a number given is kept.
    kept = {"pin_memory": True, "persistent_workers": True}  # workers live across epochs
    assert dataloader_options(None, torch.device("cuda"), 8) == {"num_workers": 4, **kept}
    assert dataloader_options(None, torch.device("cuda", 1), 1) == {"num_workers": 8, **kept}
    assert dataloader_options(2, torch.device("cuda"), 8) == {"num_workers": 2, **kept}
    # On the CPU no workers by default: they would compete with the training threads.
    none = {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert dataloader_options(None, torch.device("cpu"), 1) == none


def test_a_launched_cpu_run_uses_every_allowed_core(image_dir, tiny_config, tmp_path):
    # `accelerate launch` on a machine without a GPU sets OMP_NUM_THREADS=1; the script takes all cores back.
    args = base_args(image_dir, tiny_config, tmp_path / "out")
    index = args.index("--num_cpu_threads")
    del args[index : index + 2]
    result = run_script([*args, "--max_train_steps", "1"], env=script_env(), num_processes=1)
    assert_ok(result)
    threads = re.search(r"CPU training: (\d+) thread", result.stdout + result.stderr)
    assert threads is not None and int(threads.group(1)) == len(os.sched_getaffinity(0))


def _losses(mixed_precision: str, steps: int = 40) -> list[float]:
    """The losses of `steps` seeded training steps of the tiny preset at 16 px, fixed data, as the script runs."""
    torch.manual_seed(0)
    model = MaskedDiTModel(**preset_config("tiny", 16))
    AcceleratorState._reset_state(reset_partial_state=True)  # a new precision in the same process
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    clean = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    losses = []
    for step in range(steps):
        inputs = make_diffusion_inputs(clean, scheduler, step_generator(0, 0, step))
        with accelerator.autocast():
            loss = diffusion_loss(model, inputs)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    AcceleratorState._reset_state(reset_partial_state=True)
    return losses


def test_accelerates_dynamo_backend_compiles_the_training_step_whole(image_dir, tiny_config, tmp_path):
    # `accelerate launch --dynamo_backend ... --dynamo_use_fullgraph` compiles the model in `prepare`: a masked run
    # traces its step once, with no graph break (fullgraph would fail on one), and exports a loadable pipeline.
    env = script_env(
        ACCELERATE_DYNAMO_BACKEND="aot_eager", ACCELERATE_DYNAMO_USE_FULLGRAPH="true", TORCH_LOGS="dynamo"
    )
    args = base_args(image_dir, tiny_config, tmp_path) + ["--max_train_steps", "3", "--mask_rate", "0.5"]
    result = run_script(args + ["--train_batch_size", "4"], env=env)  # 8 images: every batch the same shape
    assert_ok(result)
    log = result.stdout + result.stderr
    assert "torchdynamo done tracing forward" in log and "[0/1]" not in log.split("Saved checkpoint")[0]
    assert MaskedDDPMPipeline.from_pretrained(tmp_path).transformer.config.hidden_size == 32


@pytest.mark.parametrize(
    "recipe, preset, batch_size",
    [
        ("maskdm-pretrain-256", "maskdm-celebahq-256", 64),
        ("maskdm-finetune-256", "maskdm-celebahq-256", 16),
        ("maskdm-transfer-256", "maskdm-small-256", 16),
        ("maskdm-pretrain-64", "maskdm-celeba-64", 128),
        ("maskdm-finetune-64", "maskdm-celeba-64", 128),
    ],
)
def test_the_papers_recipes_fit_an_80_gb_gpu(recipe, preset, batch_size, tmp_path, monkeypatch, caplog):
    # Refused is only what cannot fit with bf16 and gradient checkpointing; what the flags given cannot fit is said,
    # with the flag that makes it fit. The GPU is faked: only its memory is read.
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * 10**9))
    AcceleratorState._reset_state(True)
    Accelerator(cpu=True)  # the training modules log through accelerate
    flags = ["--recipe", recipe, "--model_preset", preset, "--train_batch_size", str(batch_size)]
    (tmp_path / "data").mkdir()
    config = config_from_flags(
        [*flags, "--train_data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out")]
    )
    cuda = torch.device("cuda")
    for precision in ("no", "bf16"):
        _check_model_plan(config, preset_config(preset, config.resolution), cuda, config.resolution, precision)
    if recipe == "maskdm-finetune-256":  # 4,096 tokens of width 768 in fp32: the one that needs bf16
        assert "--mixed_precision bf16 would make it fit" in caplog.text
    flags[-1] = str(100_000)  # a batch no GPU holds
    config = config_from_flags(
        [*flags, "--train_data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "o")]
    )
    with pytest.raises(ValueError, match="GiB, even with --mixed_precision bf16 and --gradient_checkpointing. Fix"):
        _check_model_plan(config, preset_config(preset, config.resolution), cuda, config.resolution, "bf16")


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
def test_bf16_training_follows_fp32():
    fp32, bf16 = _losses("no"), _losses("bf16")
    # The same steps learn the same: over the last 20 steps the mean loss agrees within 10 %, and both have fallen
    # well below where they started.
    late32, late16 = sum(fp32[-20:]) / 20, sum(bf16[-20:]) / 20
    assert abs(late16 - late32) <= 0.1 * late32
    assert late32 < 0.5 * fp32[0] and late16 < 0.5 * bf16[0]


def test_bf16_sampling_stays_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    transformer = MaskedDiTModel(sample_size=8, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.05)
    MaskedDDPMPipeline(transformer=transformer, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        tmp_path
    )
    images = {}
    for dtype in (torch.float32, torch.bfloat16):
        pipe = MaskedDDPMPipeline.from_pretrained(tmp_path, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        assert pipe.transformer.dtype == dtype
        generator = torch.Generator().manual_seed(0)
        images[dtype] = pipe(batch_size=2, num_inference_steps=10, generator=generator, output_type="np").images
    difference = abs(images[torch.bfloat16] - images[torch.float32])
    # Images in [0, 1]: bf16 keeps about 3 significant digits.
    assert difference.mean() < 0.02 and difference.max() < 0.15
