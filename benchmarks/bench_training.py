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
"""Training speed on the CPU: the training script's default path against fp32 on one thread and diffusers' DiT.

One run times the real training step of `diffusers_maskdm.training` (noise, timesteps and masks from the step
generator, forward on the visible tokens, `masked_mse_loss`, backward, gradient clipping, AdamW) in the reference
configuration (32x32x3, patch 2, width 256, 7 blocks, 4 heads, batch 16), at 0 % and at 90 % block masking
(2x2-patch blocks), in three arms:

- `MaskedDiTModel`, the training script's CPU default: bf16 autocast where the CPU computes bf16 natively (else
  fp32, and the table says so), all the cores this process may use;
- the same model in fp32 on one thread (what `accelerate launch` gives a CPU process unless told otherwise), and in
  bf16 on one thread (which separates the gain of bf16 from that of the second core);
- diffusers' `DiTTransformer2DModel` of the same width, depth, heads and patch size (class-conditional adaLN-Zero,
  its standard form) in fp32 on all cores, with the same noise, loss and AdamW; it computes every token whatever
  the mask, so it has one row;
- the default path with the step as it was before it stopped reading the device: a foreach AdamW instead of the
  fused one, the mask's visible count read back by the model, and the loss's finiteness, the loss and the gradient
  norm read on the host every step.

The arms are timed in interleaved rounds (each round runs every arm in turn), so load from other processes on a
shared machine falls on all of them alike; the median step of all rounds is reported. Data loading is left out (a
fixed batch in [-1, 1]).

    python benchmarks/bench_training.py            # the measurement (a few minutes on 2 CPU cores)
    python benchmarks/bench_training.py --quick    # a smoke run: tiny widths, 1 warm-up and 1 timed step

Prints a markdown table and the ratios; `--json PATH` also writes the figures.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from comparison import dit_of_the_same_size
from diffusers import DDPMScheduler

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.training import build_optimizer, diffusion_loss, make_diffusion_inputs, step_generator
from diffusers_maskdm.training.setup import build_mask_generator, cpu_supports_bf16, cpu_threads_per_process


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--patch_size", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_layers", type=int, default=7)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--mask_rate", type=float, default=0.9)
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed steps of each arm before the rounds")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps_per_round", type=int, default=3, help="timed steps of each arm in each round")
    parser.add_argument("--threads", type=int, default=None, help="threads of the 'all cores' arms (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: width 32, 2 blocks, 1+1 steps, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden_size, args.num_layers, args.num_attention_heads = 32, 2, 2
        args.warmup_steps, args.rounds, args.steps_per_round = 1, 1, 1
    for name in ("batch_size", "rounds", "steps_per_round"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.mask_rate < 1:
        parser.error(f"--mask_rate must be in (0, 1), got {args.mask_rate}")
    return args


class Arm:
    """One timed configuration: a model with its optimizer, a thread count, a precision and a mask."""

    def __init__(self, name, model, threads, bf16, mask_generator, args, dit: bool = False, before: bool = False):
        self.name, self.model, self.threads, self.bf16, self.dit = name, model.train(), threads, bf16, dit
        self.mask_generator, self.args, self.seconds, self.before = mask_generator, args, [], before
        self.optimizer = build_optimizer(model, 1e-4)
        if before:
            for group in self.optimizer.param_groups:
                group.update(fused=None, foreach=True)
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.clean = torch.rand(args.batch_size, 3, args.resolution, args.resolution) * 2 - 1
        self.labels = torch.zeros(args.batch_size, dtype=torch.long)
        self.index = 0

    def step(self) -> None:
        grid_size = self.args.resolution // self.args.patch_size
        generator = step_generator(self.args.seed, 0, self.index, device=torch.device("cpu"))
        inputs = make_diffusion_inputs(self.clean, self.scheduler, generator, self.mask_generator, grid_size)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            if self.dit:
                prediction = self.model(inputs.noisy, timestep=inputs.timesteps, class_labels=self.labels).sample
                loss = F.mse_loss(prediction.float(), inputs.target)
            else:
                if self.before:
                    inputs.ids_keep = None  # the model reads the mask's count back
                loss = diffusion_loss(self.model, inputs)
        if self.before:
            bool(torch.isfinite(loss)), loss.item()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        if self.before:
            float(grad_norm)
        else:
            self.optimizer.found_inf = (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).float()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.index += 1

    def run(self, steps: int, timed: bool) -> None:
        torch.set_num_threads(self.threads)
        for _ in range(steps):
            start = time.perf_counter()
            self.step()
            if timed:
                self.seconds.append(time.perf_counter() - start)


def build_arms(args) -> list[Arm]:
    config = {
        "sample_size": args.resolution,
        "patch_size": args.patch_size,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "num_attention_heads": args.num_attention_heads,
    }
    all_cores = args.threads or cpu_threads_per_process(1)
    bf16 = cpu_supports_bf16()
    default_path = f"{'bf16' if bf16 else 'fp32 (no native bf16)'}, {all_cores} threads"
    block = build_mask_generator("block", args.mask_rate, block_size=2)
    arms = []
    for label, threads, use_bf16 in (
        (f"MaskedDiTModel, {default_path} (default)", all_cores, bf16),
        ("MaskedDiTModel, bf16, 1 thread", 1, True),
        ("MaskedDiTModel, fp32, 1 thread", 1, False),
    ):
        torch.manual_seed(args.seed)
        model = MaskedDiTModel(**config)
        arms.append(Arm(f"{label}, full", model, threads, use_bf16, None, args))
        arms.append(Arm(f"{label}, 90 % block mask", model, threads, use_bf16, block, args))
    for masks, shown in ((None, "full"), (block, "90 % block mask")):
        torch.manual_seed(args.seed)
        model = MaskedDiTModel(**config)
        arms.append(Arm(f"as before, {default_path}, {shown}", model, all_cores, bf16, masks, args, before=True))
    torch.manual_seed(args.seed)
    dit = dit_of_the_same_size(args)
    arms.append(
        Arm(
            f"diffusers DiTTransformer2DModel, fp32, {all_cores} threads, full",
            dit,
            all_cores,
            False,
            None,
            args,
            dit=True,
        )
    )
    return arms


def main(argv=None) -> dict:
    args = parse_args(argv)
    arms = build_arms(args)
    for arm in arms:
        arm.run(args.warmup_steps, timed=False)
    for _ in range(args.rounds):
        for arm in arms:
            arm.run(args.steps_per_round, timed=True)
    ms = {arm.name: 1000 * statistics.median(arm.seconds) for arm in arms}
    default, default_masked, bf16_one, bf16_one_masked, fp32_one, fp32_one_masked, before, before_masked, dit = arms

    print(
        f"\nTraining step, {args.resolution}x{args.resolution}x3, patch {args.patch_size}, width {args.hidden_size}, "
        f"{args.num_layers} blocks, {args.num_attention_heads} heads, batch {args.batch_size}, AdamW included; "
        f"{platform.processor() or platform.machine()}; median of {args.rounds} interleaved rounds x "
        f"{args.steps_per_round} steps{' (QUICK smoke run)' if args.quick else ''}\n"
    )
    print("| arm | mask rate | ms/step | default path is faster by |")
    print("| --- | --- | --- | --- |")
    rows = []
    for arm in arms:
        rate = arm.mask_generator.achieved_mask_rate(args.resolution // args.patch_size) if arm.mask_generator else 0
        # Each arm against the default path at the same mask (DiT, which computes every token, against both).
        reference = default_masked if arm.mask_generator else default
        speedup = ms[arm.name] / ms[reference.name]
        shown = "-" if arm in (default, default_masked) else f"{speedup:.2f}x"
        if arm is dit:
            shown = f"{speedup:.2f}x (full), {ms[arm.name] / ms[default_masked.name]:.2f}x (90 %)"
        print(f"| {arm.name} | {rate:.1%} | {ms[arm.name]:.1f} | {shown} |")
        rows.append({"arm": arm.name, "mask_rate": rate, "ms_per_step": ms[arm.name], "threads": arm.threads})
    ratios = {
        "default_vs_fp32_one_thread_full": ms[fp32_one.name] / ms[default.name],
        "default_vs_fp32_one_thread_masked": ms[fp32_one_masked.name] / ms[default_masked.name],
        "default_vs_dit_full": ms[dit.name] / ms[default.name],
        "bf16_vs_fp32_one_thread_full": ms[fp32_one.name] / ms[bf16_one.name],
        "bf16_vs_fp32_one_thread_masked": ms[fp32_one_masked.name] / ms[bf16_one_masked.name],
        "masked_speedup_default": ms[default.name] / ms[default_masked.name],
        "masked_speedup_bf16_one_thread": ms[bf16_one.name] / ms[bf16_one_masked.name],
        "masked_speedup_fp32_one_thread": ms[fp32_one.name] / ms[fp32_one_masked.name],
        "default_vs_before_full": ms[before.name] / ms[default.name],
        "default_vs_before_masked": ms[before_masked.name] / ms[default_masked.name],
    }
    print(
        f"\nDefault path vs fp32 one thread: {ratios['default_vs_fp32_one_thread_full']:.2f}x (full), "
        f"{ratios['default_vs_fp32_one_thread_masked']:.2f}x (90 %); vs DiT fp32: {ratios['default_vs_dit_full']:.2f}x "
        f"(full). bf16 vs fp32, one thread each: {ratios['bf16_vs_fp32_one_thread_full']:.2f}x (full), "
        f"{ratios['bf16_vs_fp32_one_thread_masked']:.2f}x (90 %). Masked speed-up, 90 % block vs full, same precision "
        f"and threads: {ratios['masked_speedup_default']:.2f}x (default path), "
        f"{ratios['masked_speedup_bf16_one_thread']:.2f}x (bf16, one thread), "
        f"{ratios['masked_speedup_fp32_one_thread']:.2f}x (fp32, one thread). The step against the step as before: "
        f"{ratios['default_vs_before_full']:.2f}x (full), {ratios['default_vs_before_masked']:.2f}x (90 %)."
    )
    report = {"args": vars(args), "rows": rows, "ratios": ratios, "load_average": os.getloadavg()}
    print(f"Load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in report['load_average'])}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
    return report


if __name__ == "__main__":
    main()
