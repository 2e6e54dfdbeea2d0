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
"""MaskDM on the Hugging Face Hub: loading by repo id without running its code, model cards, one push path.

diffusers cannot download a pipeline whose components live outside diffusers (its download step looks for
`transformer/<module>.py`, diffusers issue #5553), and its `push_to_hub` replaces the repo's `README.md` with a
minimal card: `download_pipeline_folder` fetches configs and safetensors (never code) with `snapshot_download`, and
`upload_pipeline_folder` pushes a saved folder with a real card (`build_model_card`) in one `upload_folder`.
"""

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import make_image_grid
from diffusers.utils.hub_utils import populate_model_card
from huggingface_hub import ModelCard, ModelCardData, create_repo, snapshot_download, upload_folder
from huggingface_hub.errors import EntryNotFoundError
from safetensors import safe_open


SAMPLE_GRID_FILENAME = "samples.png"
# What of a folder makes up the pipeline on the Hub: not checkpoints, logs or validation grids.
PIPELINE_PATTERNS = ["model_index.json", "scheduler/*", "transformer/*", "vae/*", "README.md", SAMPLE_GRID_FILENAME]
# The diffusers schedulers (of those compatible with DDPMScheduler) whose `step` refuses a prediction type, measured
# with diffusers 0.42 by tests/test_hub.py (DPMSolverSDE and LMS need torchsde / scipy and are not measured).
UNSUPPORTED_SCHEDULERS = {
    "sample": (
        "EDMEulerScheduler",
        "EulerAncestralDiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "PNDMScheduler",
    )
}


def download_pipeline_folder(
    repo_id: str,
    *,
    subfolder: str | None = None,
    use_safetensors: bool | None = None,
    local_files_only: bool | None = None,
    **hub_kwargs,
) -> str:
    """
    Download a saved pipeline (or only its `subfolder`, e.g. `"transformer"`) from the Hub, or find it in the cache,
    and return the local repo folder. The promise `snapshot_download` alone does not make: only `*.json` configs and
    weights (every variant; `.bin` only with `use_safetensors=False`) are fetched, never code, so nothing from the
    repo can run. `revision`, `cache_dir`, `token`, `local_files_only` and `force_download` go to `snapshot_download`.
    """
    patterns = ["*.json", "*.safetensors"] + (["*.bin"] if use_safetensors is False else [])
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    return snapshot_download(
        repo_id,
        allow_patterns=[prefix + pattern for pattern in patterns],
        local_files_only=bool(local_files_only),
        library_name="diffusers-maskdm",
        **hub_kwargs,
    )


# The model card, a Jinja template as diffusers keeps its own (`model_card_template.md` beside this file), rendered by
# `ModelCard.from_template`; `build_model_card` fills it in.
CARD_TEMPLATE = (Path(__file__).parent / "model_card_template.md").read_text(encoding="utf-8")
_STAGE_WORDS = {
    "pretrain": "masked pre-training (loss on the visible patches only)",
    "finetune": "fine-tuning on full images",
}
# Training keys not named by their own words (`mask_rate` -> "Mask rate").
_LABELS = {"max_train_steps": "Training steps", "train_batch_size": "Batch size", "use_ema": "EMA"}
_LABELS.update(dict.fromkeys(("dataset_name", "train_data_dir"), "Data"))
_ARCHITECTURE_KEYS = (
    "sample_size in_channels patch_size hidden_size num_layers num_attention_heads time_conditioning num_class_embeds"
)


def hub_repo_id(name: str | None) -> str | None:
    """`name` if it is a repo id, not a local folder that looks like one: a local path is never written into a card."""
    return name if name and re.fullmatch(r"\w[\w.-]*/[\w.-]+", name) and not os.path.exists(name) else None


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
    prediction_type: str | None = None,
    num_parameters: int | None = None,
    vae: str | None = None,
) -> ModelCard:
    """
    The model card (`README.md`) of a MaskDM repo, `CARD_TEMPLATE` rendered by `huggingface_hub.ModelCard` (its
    sections: docs/hub.md).

    Args:
        repo_id (`str`): The repo the card describes; the usage snippet loads it.
        training (`dict`, *optional*): The recipe table (`None` values left out): `stage` (`"pretrain"` or
            `"finetune"`), `mask_kind`, `mask_rate`, `max_train_steps`, `train_batch_size`, `resolution`, `data` (or
            `dataset_name` / `train_data_dir`; "twemoji" adds the CC-BY 4.0 credit), `learning_rate`, `use_ema`, ...
        model_config (`dict`, *optional*): The transformer's config: the architecture line, and a class-conditional
            usage snippet when `num_class_embeds` is set.
        base_model (`str`, *optional*): What the model was fine-tuned from. A Hub repo id goes into the `base_model`
            metadata; a local path is only called a local checkpoint.
        datasets (`list[str]`, *optional*): Hub dataset ids trained on (`datasets` metadata).
        metrics (`dict`, *optional*): Name to value, e.g. `{"FID (10k samples, 50 DDIM steps)": 21.3}`; FIDs are
            repeated under the limitations.
        sample_grid (`str`, *optional*, defaults to `"samples.png"`): Path in the repo of the sample grid, or `None`.
        license (`str`, *optional*, defaults to `"apache-2.0"`): The weights' licence (`license` metadata).
        title (`str`, *optional*): The card's heading; defaults to the repo name.
        prediction_type (`str`, *optional*): The scheduler's; defaults to `training["prediction_type"]`, else
            `"epsilon"`.
        num_parameters (`int`, *optional*): The transformer's parameter count, for the limitations.
        vae (`str`, *optional*): For a latent-space model, the VAE that decodes its samples: a Hub repo id (linked),
            or words that follow "decoded by", e.g. "a local AutoencoderKL"; a path is only called a local folder.
    """
    training = {key: value for key, value in (training or {}).items() if value is not None}
    model_config, metrics = model_config or {}, metrics or {}
    num_classes = model_config.get("num_class_embeds")
    prediction_type = prediction_type or training.get("prediction_type") or "epsilon"
    data = training.get("data") or training.get("dataset_name") or training.get("train_data_dir")
    hub_base = hub_repo_id(base_model)
    if vae and hub_repo_id(vae):
        vae = f"the VAE [{vae}](https://huggingface.co/{vae})"
    elif vae and (os.path.exists(vae) or " " not in vae):  # a path, not words
        vae = "a VAE from a local folder (not on the Hub)"

    rows = []
    for key, value in training.items():
        value = _STAGE_WORDS.get(value, value) if key == "stage" else value
        value = f"{value:.0%}" if key == "mask_rate" and isinstance(value, float) else value
        value = f"{value}x{value}" if key == "resolution" and isinstance(value, int) else value
        rows.append((_LABELS.get(key, key.replace("_", " ").capitalize()), value))
    # A latent model's `sample_size` is the latent's side, not the images'.
    resolution = training.get("resolution") or (None if vae else model_config.get("sample_size"))
    card = ModelCard.from_template(
        ModelCardData(
            license=license,
            pipeline_tag="unconditional-image-generation",
            datasets=datasets or None,
            base_model=hub_base,
        ),
        template_str=CARD_TEMPLATE,
        title=title or repo_id.split("/")[-1],
        kind="A class-conditional" if num_classes else "An unconditional",
        repo_id=repo_id,
        hub_base=hub_base,
        base_model=base_model,
        architecture=", ".join(f"{k}={model_config[k]}" for k in _ARCHITECTURE_KEYS.split() if model_config.get(k)),
        call=f"class_labels={[i % num_classes for i in range(4)]}, guidance_scale=2.0"
        if num_classes
        else "batch_size=4",
        prediction_type=prediction_type,
        unsupported=", ".join(f"`{name}`" for name in UNSUPPORTED_SCHEDULERS.get(prediction_type, ())),
        sample_grid=sample_grid,
        training=rows,
        metrics=metrics,
        data=data,
        steps=training.get("max_train_steps"),
        batch=training.get("train_batch_size"),
        pretrain=training.get("stage") == "pretrain",
        fids="; ".join(f"{value} ({name})" for name, value in metrics.items() if "fid" in name.lower()),
        size=(f"{num_parameters / 1e6:.1f} M parameters, " if num_parameters else "")
        + (f"{resolution}x{resolution} px, " if resolution else ""),
        twemoji="twemoji" in str(data).lower(),
        vae=vae,
    )
    task = "class-conditional-image-generation" if num_classes else "unconditional-image-generation"
    tags = ["diffusers", "diffusers-maskdm", "maskdm", "diffusers-training", task]
    tags += ["masked-pretraining"] if training.get("stage") == "pretrain" else []
    return populate_model_card(card, tags=tags)  # diffusers' helper: `library_name: diffusers` and the tags


def save_model_card(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    sample_grid: PIL.Image.Image | str | None = None,
    **card_kwargs,
) -> ModelCard:
    """
    Write `README.md` (and `samples.png` when `sample_grid` is an image) into `output_dir`, created if needed. A saved
    pipeline there supplies the `model_config`, `prediction_type`, `num_parameters` and (its `vae/`) `vae` that
    `card_kwargs` leave out.

    Args:
        output_dir (`str` or `os.PathLike`): The folder to write into, e.g. the training script's output folder.
        repo_id (`str`): The repo the card describes.
        sample_grid (`PIL.Image.Image` or `str`, *optional*): An image, saved as `samples.png` (upscaled with
            nearest-neighbour to at least 512 px wide, so that small images stay visible on the card), or the path
            in the repo of an image already there. `None`: the card shows `samples.png` if `output_dir` has one.
        **card_kwargs: the other arguments of `build_model_card`.

    Returns:
        The `ModelCard` written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(sample_grid, PIL.Image.Image):
        _upscaled(sample_grid).save(output_dir / SAMPLE_GRID_FILENAME)
        sample_grid = SAMPLE_GRID_FILENAME
    elif sample_grid is None and (output_dir / SAMPLE_GRID_FILENAME).is_file():
        sample_grid = SAMPLE_GRID_FILENAME
    model_config = output_dir / "transformer/config.json"
    scheduler_config = output_dir / "scheduler/scheduler_config.json"
    if model_config.is_file():
        card_kwargs.setdefault("model_config", json.loads(model_config.read_text(encoding="utf-8")))
    vae_config = output_dir / "vae/config.json"
    if vae_config.is_file() and not card_kwargs.get("vae"):
        vae_class = json.loads(vae_config.read_text(encoding="utf-8")).get("_class_name", "AutoencoderKL")
        card_kwargs["vae"] = f"the pipeline's `{vae_class}` (in `vae/`)"
    if scheduler_config.is_file():
        card_kwargs.setdefault("prediction_type", json.loads(scheduler_config.read_text()).get("prediction_type"))
    weights = output_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    if weights.is_file() and "num_parameters" not in card_kwargs:
        with safe_open(str(weights), framework="pt") as tensors:  # the header only: no tensor is loaded
            card_kwargs["num_parameters"] = sum(math.prod(tensors.get_slice(k).get_shape()) for k in tensors.keys())
    card = build_model_card(repo_id, sample_grid=None if sample_grid is None else str(sample_grid), **card_kwargs)
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
    scheduler: SchedulerMixin | None = None,
) -> PIL.Image.Image:
    """`num_images` seeded samples of `scheduler` (default: the pipeline's own; a given one is used for the grid only)
    tiled in a square-ish grid, scaled up (nearest) to at least 512 px wide."""
    if class_labels is not None:
        num_images = len(class_labels)
    own_scheduler = pipeline.scheduler
    try:
        pipeline.scheduler = scheduler or own_scheduler
        images = pipeline(
            batch_size=num_images,
            class_labels=class_labels,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images
    finally:
        pipeline.scheduler = own_scheduler
    cols = max(c for c in range(1, int(num_images**0.5) + 1) if num_images % c == 0)
    return _upscaled(make_image_grid(images, rows=num_images // cols, cols=cols))


def _upscaled(image: PIL.Image.Image) -> PIL.Image.Image:
    """`image` scaled up (nearest neighbour) to at least 512 px wide, so that small samples stay visible."""
    scale = max(1, math.ceil(512 / image.width))
    return image.resize((image.width * scale, image.height * scale), PIL.Image.NEAREST)


def upload_pipeline_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    model_card: ModelCard | None = None,
    allow_patterns: list[str] | None = None,
    **card_kwargs,
):
    """
    Upload the pipeline of `folder` (written by `save_pretrained` or the training script) to `repo_id`, created if
    needed, with a model card, in one `upload_folder`: only the files of `allow_patterns` (by default the pipeline's,
    not checkpoints or logs). The card, written into `folder` as `README.md`, is in order: `model_card`; the folder's
    own MaskDM card; with no card arguments, the repo's card; or `save_model_card(folder, repo_id, **card_kwargs)`.
    `commit_message` (default `"Upload MaskedDDPMPipeline"`), `private`, `token` and `create_pr` are
    `huggingface_hub`'s. Returns the `huggingface_hub.CommitInfo` of the upload.
    """
    folder = Path(folder)
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    readme = folder / "README.md"
    folder_has_card = readme.is_file() and "diffusers-maskdm" in readme.read_text(encoding="utf-8")
    if model_card is None and not folder_has_card and not card_kwargs:
        try:
            model_card = ModelCard.load(repo_id, token=token)
        except EntryNotFoundError:
            pass
    if model_card is not None:
        model_card.save(readme)
    elif not folder_has_card:
        save_model_card(folder, repo_id, **card_kwargs)
    return upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message or "Upload MaskedDDPMPipeline",
        token=token,
        create_pr=create_pr,
        allow_patterns=allow_patterns or PIPELINE_PATTERNS,
    )
