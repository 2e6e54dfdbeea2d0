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
"""The picture of the two-stage demo, and the training speed of each of its runs.

    python examples/demo_figure.py maskdm-demo

Reads the runs of `examples/demo_two_stage.sh` in the demo folder (`pretrain/`, `finetune/`, `scratch/`, and the
fine-tuning data in `faces/`) and writes `comparison.png`: what masked pre-training sees (the data with its masks),
the samples of the pre-trained model, of the model fine-tuned from it, and of the same counted compute from scratch,
side by side and labelled. The sample
panels are each run's `samples.png` (the grid the training script drew, same seed and sampler). Then it prints the
steps/s of every run, from the training time its last checkpoint records (training steps only: no start-up, data
loading or sampling). PIL and torch only.
"""

import argparse
import json
from pathlib import Path

import torch
from draw_masks import load_images  # examples/draw_masks.py, beside this script
from PIL import Image, ImageDraw, ImageFont

from diffusers_maskdm import MaskGenerator, draw_masks
from diffusers_maskdm.training.checkpointing import find_latest_checkpoint, read_training_state


RUNS = ("pretrain", "finetune", "scratch")


def run_summary(folder: Path) -> dict:
    """Steps, training seconds and the model card's settings of one run of the demo."""
    checkpoint = find_latest_checkpoint(folder)
    if checkpoint is None:
        raise SystemExit(f"{folder} has no checkpoint: run examples/demo_two_stage.sh first.")
    state = read_training_state(checkpoint)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return {
        "steps": int(state["global_step"]),
        "seconds": float(state["train_seconds"]),
        "patch_size": config["patch_size"],
        "prediction_type": scheduler["prediction_type"],
    }


def masked_inputs(num_images: int, resolution: int, patch_size: int, mask_rate: float, seed: int) -> Image.Image:
    """A grid of Twemoji images with the patches masked pre-training drops painted grey."""
    images = load_images(None, num_images, resolution)
    grid_size = resolution // patch_size
    masks = MaskGenerator("patch", mask_rate)(num_images, grid_size, generator=torch.Generator().manual_seed(seed))
    shown = draw_masks(images, masks, patch_size)
    tiles = [Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy()) for x in shown]
    cols = int(num_images**0.5)
    canvas = Image.new("RGB", (cols * resolution, (num_images // cols) * resolution))
    for index, tile in enumerate(tiles):
        canvas.paste(tile, ((index % cols) * resolution, (index // cols) * resolution))
    return canvas


def compose(panels: list[tuple[str, Image.Image]], title: str, panel_size: int) -> Image.Image:
    """Panels side by side, each scaled (nearest) to `panel_size` and captioned, under a title."""
    font = ImageFont.load_default(size=15)
    title_font = ImageFont.load_default(size=18)
    pad, title_height, caption_height = 12, 34, 58
    width = len(panels) * panel_size + (len(panels) + 1) * pad
    canvas = Image.new("RGB", (width, title_height + panel_size + caption_height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 8), title, fill="black", font=title_font)
    for index, (caption, image) in enumerate(panels):
        left = pad + index * (panel_size + pad)
        canvas.paste(image.convert("RGB").resize((panel_size, panel_size), Image.NEAREST), (left, title_height))
        draw.multiline_text((left, title_height + panel_size + 6), caption, fill="black", font=font, spacing=3)
    return canvas


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_dir", type=Path, help="the OUTPUT_DIR of examples/demo_two_stage.sh")
    parser.add_argument("--mask_rate", type=float, default=0.9, help="the mask rate of the pre-training stage")
    parser.add_argument("--panel_size", type=int, default=320, help="pixels per panel side")
    args = parser.parse_args(argv)

    runs = {name: run_summary(args.demo_dir / name) for name in RUNS}
    for name, run in runs.items():
        run["grid"] = Image.open(args.demo_dir / name / "samples.png")
    resolution = json.loads((args.demo_dir / "pretrain" / "transformer" / "config.json").read_text())["sample_size"]
    pretrain, finetune, scratch = runs["pretrain"], runs["finetune"], runs["scratch"]
    num_faces = len(list((args.demo_dir / "faces").glob("*.png")))
    panels = [
        (
            f"what pre-training sees:\n{args.mask_rate:.0%} of the patches dropped",
            masked_inputs(16, resolution, pretrain["patch_size"], args.mask_rate, seed=0),
        ),
        (f"masked pre-training only\n{pretrain['steps']} steps on all emoji", pretrain["grid"]),
        (f"fine-tuned from it on {num_faces} faces\n+{finetune['steps']} full-image steps", finetune["grid"]),
        (f"from scratch on the faces, same compute\n{scratch['steps']} full-image steps", scratch["grid"]),
    ]
    title = (
        f"MaskDM on Twemoji {resolution}x{resolution}: masked pre-training, then fine-tuning on a small domain, "
        f"against the same compute from scratch ({pretrain['prediction_type']} prediction)"
    )
    figure = compose(panels, title, args.panel_size)
    figure.save(args.demo_dir / "comparison.png")
    print(f"wrote {args.demo_dir / 'comparison.png'} ({figure.width}x{figure.height})")

    print("\n| run | steps | training s | steps/s |\n| --- | --- | --- | --- |")
    for name, run in runs.items():
        print(f"| {name} | {run['steps']} | {run['seconds']:.1f} | {run['steps'] / run['seconds']:.2f} |")


if __name__ == "__main__":
    main()
