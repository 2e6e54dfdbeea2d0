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
"""`--streaming`: training on a `datasets` IterableDataset, read as it trains (a dataset larger than the disk). Each
process and DataLoader worker reads a part of it, in blocks permuted by the seed; every item carries its part's
position, which a checkpoint keeps, so a resumed run trains on the very batches the uninterrupted run would have
(docs/data.md, "Streaming")."""

import json
import logging

import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node

from .data import (
    _GRAYSCALE_MODES,
    _NUM_CHANNELS_PROBE,
    _SAMPLE_STREAM,
    _SHUFFLE_STREAM,
    ImageTransform,
    _column,
    _to_8bit,
    derive_seed,
)


logger = logging.getLogger(__name__)

STREAM_BLOCK = 1024  # examples read, permuted and (on a resume) read again together: the shuffle's reach


class StreamingImageDataset(torch.utils.data.IterableDataset):
    r"""
    Training images of a streamed `datasets.IterableDataset`, as [`~training.data.TrainImageDataset`] gives them
    (`"pixel_values"` uint8, `"class_labels"` of a `ClassLabel` column) plus `"stream"`, the position after the item.
    Unreadable images are skipped with a warning. Call `set_epoch` before each pass; `state_dict` (after the batches
    used, from the `"stream"` of each) and `load_state_dict` carry a process's position across a resume.

    Args:
        stream (`datasets.IterableDataset`): the whole stream (every process's).
        transform ([`ImageTransform`]): resize, crop and flip; crops and flips are drawn per item from the seed.
        image_column (`str`), label_column (`str`, *optional*): as for `TrainImageDataset`.
        seed (`int`): seeds the block permutations and the augmentations.
        rank (`int`), num_processes (`int`): this process and how many read the stream.
        description (`str`): where the data came from, for messages and model cards.
    """

    def __init__(self, stream, transform, image_column, label_column, seed, rank, num_processes, description):
        self.stream = stream  # `datasets` shuffles the shard order each epoch (`set_epoch`)
        self.transform, self.image_column, self.label_column = transform, image_column, label_column
        self.seed, self.rank, self.num_processes, self.description = seed, rank, num_processes, description
        self.epoch, self.positions, self.next_stream = 0, {}, 0
        self._skipped = torch.zeros((), dtype=torch.long).share_memory_()  # counted in DataLoader workers too
        feature = stream.features[label_column] if label_column else None
        self.num_classes = feature.num_classes if feature is not None else None

    num_channels = property(lambda self: self.transform.num_channels)
    num_skipped = property(lambda self: int(self._skipped))

    def set_epoch(self, epoch: int) -> None:
        """Starts `epoch` afresh, unless a loaded position is in it."""
        if epoch != self.epoch:
            self.epoch, self.positions, self.next_stream = epoch, {}, 0

    def used(self, position: str) -> None:
        """Records the `"stream"` of the last item of a batch the run used."""
        saved = json.loads(position)
        self.positions[saved["stream"]] = saved
        self.next_stream = saved["stream"] + 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "positions": list(self.positions.values()), "next_stream": self.next_stream}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.next_stream = state["epoch"], state["next_stream"]
        self.positions = {position["stream"]: position for position in state["positions"]}

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        num_streams = worker.num_workers if worker is not None else 1
        # The DataLoader takes batches from its workers in turn: the first worker goes on with the stream of the
        # batch after the last one used.
        stream = ((worker.id if worker is not None else 0) + self.next_stream) % num_streams
        part = split_dataset_by_node(self.stream, self.rank * num_streams + stream, self.num_processes * num_streams)
        part.set_epoch(self.epoch)
        saved = self.positions.get(stream)
        block, used, start = (saved["block"], saved["used"], saved["start"]) if saved else (0, 0, None)
        if start is not None:
            part.load_state_dict(start)
        # `iter` reads blocks as they are, where iterating `part` in a DataLoader worker would split it again.
        for block_rows in part.iter(batch_size=STREAM_BLOCK):
            examples = [dict(zip(block_rows, values)) for values in zip(*block_rows.values())]
            keys = (self.epoch, self.rank, num_streams, stream, block)
            order = np.random.default_rng(derive_seed(self.seed, _SHUFFLE_STREAM, *keys)).permutation(len(examples))
            for index in range(used, len(examples)):
                position = {"stream": stream, "block": block, "used": index + 1, "start": start}
                item = self._item(examples[order[index]], derive_seed(self.seed, _SAMPLE_STREAM, *keys, index))
                if item is not None:
                    yield item | {"stream": json.dumps(position)}
            block, used, start = block + 1, 0, part.state_dict()

    def _item(self, example: dict, seed: int) -> dict | None:
        try:
            image = datasets.Image().decode_example(example[self.image_column])
            image.load()
        except Exception as error:  # PIL raises many types for broken files
            self._skipped += 1
            logger.warning("Skipping an unreadable image of %s: %s", self.description, error)
            return None
        item = {"pixel_values": self.transform(image, torch.Generator().manual_seed(seed))}
        if self.label_column is not None:
            item["class_labels"] = torch.tensor(example[self.label_column], dtype=torch.long)
        return item


def build_streaming_dataset(
    dataset_name: str,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    split: str = "train",
    image_column: str | None = None,
    label_column: str | None = None,
    num_channels: int | None = None,
    resolution: int = 32,
    center_crop: bool = False,
    random_flip: bool = False,
    seed: int | None = 0,
    rank: int = 0,
    num_processes: int = 1,
) -> StreamingImageDataset:
    """`--streaming`: `dataset_name` (a Hub dataset or a local folder) as a stream, read by `num_processes` processes
    (this one: `rank`); the options are [`~training.data.build_train_dataset`]'s."""
    stream = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, split=split, streaming=True)
    description = f"dataset {dataset_name!r}{f' ({dataset_config_name})' if dataset_config_name else ''}, split "
    description += f"{split!r}, streamed"
    if stream.features is None:
        raise ValueError(
            f"--streaming: {description} declares no columns, so its images cannot be found before reading it. Fix: "
            "drop --streaming, or use a dataset whose files or card declare its features."
        )
    image_column = _column(stream, "image_column", image_column)
    if label_column is not None:
        _column(stream, "label_column", label_column)
        if not isinstance(stream.features[label_column], datasets.ClassLabel):
            raise ValueError(
                f"--streaming: `label_column`={label_column!r} holds {stream.features[label_column]}, not a "
                "ClassLabel, so the number of classes is unknown until the whole stream is read. Fix: use a column "
                "of ClassLabel (a folder of class sub-folders has one), drop --streaming, or leave it unset."
            )
    stream = stream.select_columns([image_column] + ([label_column] if label_column else []))
    stream = stream.cast_column(image_column, datasets.Image(decode=False))  # decoded per item, skipped if broken
    if num_channels is None:  # as `TrainImageDataset` decides without checking every image: the first few
        modes = set()
        for example in stream.take(_NUM_CHANNELS_PROBE):
            try:
                modes.add(_to_8bit(datasets.Image().decode_example(example[image_column])).mode)
            except Exception:  # PIL raises many types for broken files; training skips them too
                continue
        num_channels = 1 if modes and modes <= _GRAYSCALE_MODES else 3
    transform = ImageTransform(resolution, num_channels, center_crop, random_flip)
    logger.info("Training data: %s, read as it trains by %d process(es).", description, num_processes)
    return StreamingImageDataset(
        stream, transform, image_column, label_column, seed or 0, rank, num_processes, description
    )
