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
"""Sampling speed: images per second of MaskedDiTModel (fp32 and bf16) vs diffusers' DiTTransformer2DModel (fp32).

Both models get the same width, depth, heads and patch size (the MaskDM reference: 32x32x3, patch 2, width 256,
7 blocks, 4 heads) and are driven by the same 50-step DDIM loop at batch 64, in one run. MaskedDiTModel runs in
fp32 and with bf16 weights and latents (what `MaskedDDPMPipeline.from_pretrained(..., torch_dtype=torch.bfloat16)`
gives), from the same starting noise; the largest pixel difference (0-255) of the bf16 images to the fp32 ones is
reported. MaskedDDPMPipeline (bf16) is timed too, to show what the pipeline adds around the model. The DiT baseline
is diffusers' class-conditional adaLN-Zero design (labels of 0); MaskedDiTModel is the paper's U-ViT (time token,
long skips). `--pretrained_model_name_or_path` samples a trained MaskedDiTModel (a pipeline folder) instead of a
freshly initialised one; its config then sets the sizes of both models.

    python benchmarks/bench_sampling.py            # the full measurement (minutes on 2 CPU cores)
    python benchmarks/bench_sampling.py --quick    # a smoke run: batch 2, 2 steps, one repeat

Prints a markdown table and the MaskDM / DiT ratio; `--json PATH` also writes the figures.
"""

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from comparison import dit_of_the_same_size
from diffusers import DDIMScheduler, DiTTransformer2DModel

from diffusers_maskdm import MaskedDiTModel
from diffusers_maskdm.pipelines import MaskedDDPMPipeline


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--patch_size", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_layers", type=int, default=7)
    parser.add_argument("--num_attention_heads", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--pretrained_model_name_or_path", default=None, help="a MaskedDDPMPipeline folder to sample (trained weights)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, 2 steps, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.num_inference_steps, args.repeats = 2, 2, 1
    for name in ("batch_size", "num_inference_steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def build_models(args) -> tuple[MaskedDiTModel, MaskedDiTModel, DiTTransformer2DModel]:
    """MaskedDiTModel in fp32 and in bf16 (the same weights), and a DiT of the same sizes in fp32."""
    if args.pretrained_model_name_or_path:
        maskdm = MaskedDiTModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="transformer")
        for name in ("patch_size", "hidden_size", "num_layers", "num_attention_heads"):
            setattr(args, name, maskdm.config[name])
        args.resolution = maskdm.config.sample_size
    else:
        maskdm = MaskedDiTModel(
            sample_size=args.resolution,
            in_channels=3,
            patch_size=args.patch_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_attention_heads=args.num_attention_heads,
        )
    dit = dit_of_the_same_size(args)
    maskdm, dit = maskdm.to(args.device).eval(), dit.to(args.device).eval()
    maskdm_bf16 = copy.deepcopy(maskdm).to(torch.bfloat16)
    return maskdm, maskdm_bf16, dit


def ddim_loop(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler, args, dtype) -> torch.Tensor:
    """The sampling loop all models share: noise (drawn in fp32, then cast), then `num_inference_steps` DDIM updates."""
    generator = torch.Generator(args.device).manual_seed(args.seed)
    shape = (args.batch_size, 3, args.resolution, args.resolution)
    sample = torch.randn(shape, generator=generator, device=args.device).to(dtype)
    scheduler.set_timesteps(args.num_inference_steps, device=args.device)
    for t in scheduler.timesteps:
        sample = scheduler.step(denoise(scheduler.scale_model_input(sample, t), t), t, sample).prev_sample
    return sample


def to_pixels(sample: torch.Tensor) -> torch.Tensor:
    """[-1, 1] samples to 0-255 integers, as the pipeline converts them."""
    return ((sample.float() / 2 + 0.5).clamp(0, 1) * 255).round()


def time_interleaved(runs: dict[str, Callable[[], object]], args) -> dict[str, float]:
    """Median wall-clock seconds of each run over `args.repeats` rounds, after one untimed warm-up run each.

    Each round runs every model once, in turn, so that load from other processes on a shared machine falls on all
    models alike instead of on whichever was timed while it lasted.
    """

    def synchronize():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for run in runs.values():
        run()
    synchronize()
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            synchronize()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


@torch.inference_mode()
def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    maskdm, maskdm_bf16, dit = build_models(args)
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    pipe = MaskedDDPMPipeline(transformer=maskdm_bf16, scheduler=DDIMScheduler.from_config(scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    dit_labels = torch.zeros(args.batch_size, dtype=torch.long, device=args.device)

    def dit_denoise(x, t):
        return dit(x, timestep=t.expand(x.shape[0]), class_labels=dit_labels).sample

    def run_pipeline():
        return pipe(
            batch_size=args.batch_size,
            num_inference_steps=args.num_inference_steps,
            generator=torch.Generator(args.device).manual_seed(args.seed),
            output_type="pt",
        )

    fp32_name, bf16_name, dit_name = (
        "MaskedDiTModel, fp32 (shared DDIM loop)",
        "MaskedDiTModel, bf16 (shared DDIM loop)",
        "DiTTransformer2DModel, fp32 (shared DDIM loop)",
    )
    rows = {
        fp32_name: (maskdm, lambda: ddim_loop(lambda x, t: maskdm(x, t).sample, scheduler, args, torch.float32)),
        bf16_name: (
            maskdm_bf16,
            lambda: ddim_loop(lambda x, t: maskdm_bf16(x, t).sample, scheduler, args, torch.bfloat16),
        ),
        "MaskedDDPMPipeline, bf16 (DDIM)": (maskdm_bf16, run_pipeline),
        dit_name: (dit, lambda: ddim_loop(dit_denoise, scheduler, args, torch.float32)),
    }
    timings = time_interleaved({name: run for name, (_, run) in rows.items()}, args)
    results = {}
    for name, (model, _) in rows.items():
        results[name] = {
            "seconds_per_batch": timings[name],
            "images_per_second": args.batch_size / timings[name],
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        }
    difference = (to_pixels(rows[bf16_name][1]()) - to_pixels(rows[fp32_name][1]())).abs()

    def ratio(a, b):
        return results[a]["images_per_second"] / results[b]["images_per_second"]

    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor()
    print(
        f"{args.resolution}x{args.resolution}x3, patch {args.patch_size}, width {args.hidden_size}, "
        f"{args.num_layers} blocks, {args.num_attention_heads} heads"
        f"{' (trained weights)' if args.pretrained_model_name_or_path else ''}; batch {args.batch_size}, "
        f"{args.num_inference_steps} DDIM steps, {args.device} ({device or 'unknown'}, {torch.get_num_threads()} "
        f"threads), median of {args.repeats} interleaved rounds{' (QUICK smoke run)' if args.quick else ''}"
    )
    print("| model | params (M) | s / batch | images / s |")
    print("| --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['parameters_m']:.2f} | {r['seconds_per_batch']:.3f} | {r['images_per_second']:.2f} |")
    report = {
        "args": vars(args),
        "device": device,
        "threads": torch.get_num_threads(),
        "results": results,
        "ratio_maskdm_bf16_over_dit": ratio(bf16_name, dit_name),
        "ratio_maskdm_fp32_over_dit": ratio(fp32_name, dit_name),
        "ratio_bf16_over_fp32": ratio(bf16_name, fp32_name),
        "max_pixel_difference_bf16_vs_fp32": float(difference.max()),
        "mean_pixel_difference_bf16_vs_fp32": float(difference.mean()),
    }
    print(
        f"images/s: MaskedDiTModel bf16 / DiT fp32 {report['ratio_maskdm_bf16_over_dit']:.2f}x, MaskedDiTModel fp32 / "
        f"DiT fp32 {report['ratio_maskdm_fp32_over_dit']:.2f}x, bf16 / fp32 {report['ratio_bf16_over_fp32']:.2f}x; "
        f"bf16 images vs fp32 images (0-255): largest difference {report['max_pixel_difference_bf16_vs_fp32']:.0f}, "
        f"mean {report['mean_pixel_difference_bf16_vs_fp32']:.2f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
