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
"""Training speed: images/s and tokens/s of masked pre-training (stage 1) and full-image fine-tuning (stage 2).

One run times the real training step of `diffusers_maskdm.training` (noise, timesteps and masks from the step
generator, forward on the visible tokens, `masked_mse_loss`, backward, gradient clipping, AdamW) on two models:
the `tiny` preset at 32x32x3 (patch 2) and the reference config of the core issue (32x32x3, patch 2, width 256,
7 blocks, 4 heads), each at stage 1 (90 % block masks, 2x2-patch blocks) and stage 2 (no mask), batch 16.
Data loading is left out (a fixed batch in [-1, 1]): it measures the model, not the disk.

    python benchmarks/bench_training.py            # the full measurement (a few minutes on 2 CPU cores)
    python benchmarks/bench_training.py --quick    # a smoke run: 1 warm-up and 2 timed steps

Tokens are the patch tokens the model computes (the visible ones). Prints a markdown table and the
stage 1 / stage 2 ratios; `--json PATH` also writes the figures.
"""

import argparse
import json
import platform
import statistics
import time

import torch
from diffusers import DDPMScheduler

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.training.loop import (
    build_mask_generator,
    diffusion_loss,
    make_diffusion_inputs,
    num_visible_tokens,
    step_generator,
)
from diffusers_maskdm.training.optim import build_optimizer
from diffusers_maskdm.training.presets import preset_config


REFERENCE = {"hidden_size": 256, "num_layers": 7, "num_attention_heads": 4}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--mask_rate", type=float, default=0.9)
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up step, 2 timed steps, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup_steps, args.steps, args.repeats = 1, 2, 1
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.mask_rate < 1:
        parser.error(f"--mask_rate must be in (0, 1), got {args.mask_rate}")
    return args


def model_configs(resolution: int) -> dict[str, dict]:
    tiny = preset_config("tiny", resolution)
    reference = {**tiny, **REFERENCE, "patch_size": 2, "mlp_ratio": 4.0}
    return {"tiny preset": tiny, "reference (d256, 7 blocks, 4 heads)": reference}


def time_steps(model, mask_generator, args) -> list[float]:
    """Seconds per training step, one median-able figure per repeat."""
    device = torch.device(args.device)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = build_optimizer(model, 1e-4)
    clean = torch.rand(args.batch_size, 3, args.resolution, args.resolution, device=device) * 2 - 1
    grid_size, patch_size = model.grid_size, model.config.patch_size

    def step(index: int) -> None:
        inputs = make_diffusion_inputs(
            clean, scheduler, step_generator(args.seed, 0, index, device=device), mask_generator, grid_size
        )
        loss = diffusion_loss(model, inputs, patch_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for index in range(args.warmup_steps):
        step(index)
    times = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        for index in range(args.steps):
            step(index)
        sync()
        times.append((time.perf_counter() - start) / args.steps)
    return times


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    rows = []
    for name, config in model_configs(args.resolution).items():
        model = MaskedDiTModel(**config).to(args.device).train()
        for stage, mask_generator in (
            ("stage 1", build_mask_generator("block", args.mask_rate, block_size=2)),
            ("stage 2", None),
        ):
            seconds = statistics.median(time_steps(model, mask_generator, args))
            tokens = num_visible_tokens(args.batch_size, model.num_patches, mask_generator, model.grid_size)
            rate = mask_generator.achieved_mask_rate(model.grid_size) if mask_generator else 0.0
            rows.append(
                {
                    "model": name,
                    "stage": stage,
                    "mask_rate": rate,
                    "ms_per_step": 1000 * seconds,
                    "images_per_s": args.batch_size / seconds,
                    "tokens_per_s": tokens / seconds,
                    "parameters": sum(p.numel() for p in model.parameters()),
                }
            )

    print(
        f"\nTraining step, batch {args.batch_size}, {args.resolution}x{args.resolution}x3, device {args.device} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
        f"median of {args.repeats} x {args.steps} steps\n"
    )
    print("| model | stage | mask rate | ms/step | images/s | tokens/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['model']} | {row['stage']} | {row['mask_rate']:.0%} | {row['ms_per_step']:.1f} | "
            f"{row['images_per_s']:.1f} | {row['tokens_per_s']:.0f} |"
        )
    print()
    for name in model_configs(args.resolution):
        first, second = [row for row in rows if row["model"] == name]
        print(
            f"{name}: stage 1 / stage 2 = {first['images_per_s'] / second['images_per_s']:.2f}x images/s, "
            f"{first['tokens_per_s'] / second['tokens_per_s']:.2f}x tokens/s"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "rows": rows}, file, indent=2)
    return rows


if __name__ == "__main__":
    main()
