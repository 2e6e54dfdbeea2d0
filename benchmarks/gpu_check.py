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
"""The GPU figures in one command: the real training step, full against 90 % block-masked, on the paper's 256 px
pixel network and on a latent one, in bf16 and fp16, compiled or not, with its peak memory and host syncs; and
sampling speed. Made to fit 8 minutes on one H100 (rows that would pass `--max_seconds` are left out, and said so).

- `maskdm-celebahq-256`: 256x256x3 at patch 4, 4,096 tokens, width 768, 12 blocks; batch 16 (the paper's).
- a latent network: 32x32x4 latents (a 256 px image under Stable Diffusion's VAE) at patch 2, 256 tokens, the same
  width and depth; batch 64. The VAE is left out: its encoding is cached before training.

Each row: the median of `--steps` timed steps after `--warmup` (compilation included there), the peak memory of the
timed steps, the host syncs counted per step (`torch.cuda.set_sync_debug_mode`, CUDA only), and the masked step's
speed-up over the full one. The step is `diffusers_maskdm.training`'s: noise, timesteps and masks from the step
generator, the visible patches from the generator's count, `diffusion_loss`, backward, clipping, the fused AdamW
told on the device whether to skip.

    python benchmarks/gpu_check.py --json gpu_check.json     # on a GPU machine
    python benchmarks/gpu_check.py --smoke                   # tiny sizes, runs on the CPU (the tests run it)
"""

import argparse
import json
import statistics
import time
import warnings

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel
from diffusers_maskdm.training import build_optimizer, diffusion_loss, make_diffusion_inputs, step_generator
from diffusers_maskdm.training.presets import preset_config
from diffusers_maskdm.training.setup import build_mask_generator


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each row (compilation included)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each row")
    parser.add_argument("--max_seconds", type=float, default=450, help="rows that would start later are left out")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on whatever device: a check of the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.warmup, args.steps = 1, 1
    return args


def networks(smoke: bool) -> list[tuple[str, dict, int]]:
    """(name, model config, batch size) of each network timed."""
    pixel = preset_config("maskdm-celebahq-256", 256)
    latent = {**pixel, "sample_size": 32, "in_channels": 4, "patch_size": 2}
    if smoke:
        tiny = {"hidden_size": 32, "num_layers": 2, "num_attention_heads": 2}
        return [("pixel (smoke)", {**pixel, **tiny, "sample_size": 32}, 2), ("latent (smoke)", {**latent, **tiny}, 2)]
    return [("maskdm-celebahq-256, pixel", pixel, 16), ("latent 32x32x4", latent, 64)]


def time_training(config: dict, batch_size: int, dtype: torch.dtype, compiled: bool, masked: bool, args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = MaskedDiTModel(**config).to(device).train()
    runnable = torch.compile(model, backend="aot_eager" if device.type == "cpu" else "inductor") if compiled else model
    optimizer = build_optimizer(model, 1e-4)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    masks = build_mask_generator("block", 0.9, block_size=2) if masked else None
    size = config["sample_size"]
    clean = torch.rand(batch_size, config["in_channels"], size, size, device=device) * 2 - 1
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    grid_size = size // config["patch_size"]

    def step(index: int) -> None:
        inputs = make_diffusion_inputs(clean, scheduler, step_generator(0, 0, index, device=device), masks, grid_size)
        with torch.autocast(device.type, dtype=dtype):
            loss = diffusion_loss(runnable, inputs)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.found_inf = (~(torch.isfinite(loss) & torch.isfinite(norm))).float()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for index in range(args.warmup):
        step(index)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, syncs = [], 0
    for index in range(args.warmup, args.warmup + args.steps):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            step(index)
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            synchronize(device)  # after the count: this wait is the timing's, not the step's
            seconds.append(time.perf_counter() - start)
        syncs += sum("synchronizing operation" in str(w.message) for w in caught)
    return {
        "ms_per_step": 1000 * statistics.median(seconds),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "host_syncs_per_step": syncs / args.steps if device.type == "cuda" else None,
    }


def time_sampling(config: dict, dtype: torch.dtype, args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = MaskedDiTModel(**config).to(device, dtype).eval()
    pipeline = MaskedDDPMPipeline(transformer=model, scheduler=DDIMScheduler(num_train_timesteps=1000))
    batch_size, steps = (2, 2) if args.smoke else (16, 50)
    pipeline(batch_size=batch_size, num_inference_steps=2, output_type="np")  # warm-up
    synchronize(device)
    start = time.perf_counter()
    pipeline(batch_size=batch_size, num_inference_steps=steps, output_type="np")
    synchronize(device)
    return {"images_per_s": batch_size / (time.perf_counter() - start), "batch_size": batch_size, "ddim_steps": steps}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> dict:
    args = parse_args(argv)
    began = time.perf_counter()
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "rows": [],
        "left_out": [],
        "sampling": {},
    }
    for name, config, batch_size in networks(args.smoke):
        for dtype in (torch.bfloat16, torch.float16):
            for compiled in (False, True):
                row = {"network": name, "batch_size": batch_size, "dtype": str(dtype).split(".")[1]}
                row["compiled"] = compiled
                if time.perf_counter() - began > args.max_seconds:
                    report["left_out"].append(row)
                    continue
                full = time_training(config, batch_size, dtype, compiled, False, args)
                masked = time_training(config, batch_size, dtype, compiled, True, args)
                row |= {"full": full, "masked_90": masked}
                row["masked_speedup"] = full["ms_per_step"] / masked["ms_per_step"]
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
        report["sampling"][name] = time_sampling(config, torch.bfloat16, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    print(f"{len(report['rows'])} rows, {len(report['left_out'])} left out, in {time.perf_counter() - began:.0f} s")
    return report


if __name__ == "__main__":
    main()
