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
"""Which sampler shows what the demo's models learned: the same weights and seeds through four diffusers samplers.

    python benchmarks/demo_samplers.py maskdm-demo --output docs/demo_samplers.png

For the fine-tuned and the from-scratch model of `examples/demo_two_stage.sh` (EMA weights), 8 samples from the same
initial noise with DDPM (ancestral, 50 steps), DDIM at eta 0 without clipping (50), DPM-Solver++ (20) and SDE-DPM-Solver++
(20), one row each, labelled, scaled up (nearest).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from PIL import Image, ImageDraw, ImageFont

from diffusers_maskdm import MaskedDDPMPipeline


SAMPLERS = (
    ("DDPM, 50 steps", lambda config: DDPMScheduler.from_config(config), 50),
    ("DDIM eta 0, 50 steps", lambda config: DDIMScheduler.from_config(config, clip_sample=False), 50),
    ("DPM-Solver++, 20 steps", lambda config: DPMSolverMultistepScheduler.from_config(config), 20),
    (
        "SDE-DPM-Solver++, 20 steps",
        lambda config: DPMSolverMultistepScheduler.from_config(config, algorithm_type="sde-dpmsolver++"),
        20,
    ),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_dir", type=Path)
    parser.add_argument("--output", type=Path, default=None, help="default: DEMO_DIR/samplers.png")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args()

    rows = []
    for run in ("finetune", "scratch"):
        pipe = MaskedDDPMPipeline.from_pretrained(args.demo_dir / run)
        pipe.set_progress_bar_config(disable=True)
        config = pipe.scheduler.config
        for label, make, steps in SAMPLERS:
            pipe.scheduler = make(config)
            generator = torch.Generator().manual_seed(0)
            images = pipe(args.num_images, generator=generator, num_inference_steps=steps, output_type="np").images
            rows.append((f"{run}: {label}", np.concatenate(list(images), axis=1)))

    font = ImageFont.load_default(size=14)
    label_width = 260
    strips = [Image.fromarray((strip * 255).round().astype(np.uint8)) for _, strip in rows]
    strips = [s.resize((s.width * args.scale, s.height * args.scale), Image.NEAREST) for s in strips]
    canvas = Image.new("RGB", (label_width + strips[0].width, sum(s.height for s in strips)), "white")
    draw, top = ImageDraw.Draw(canvas), 0
    for (label, _), strip in zip(rows, strips):
        canvas.paste(strip, (label_width, top))
        draw.text((8, top + strip.height // 2 - 8), label, fill="black", font=font)
        top += strip.height
    output = args.output or args.demo_dir / "samplers.png"
    canvas.save(output)
    print(f"wrote {output} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
