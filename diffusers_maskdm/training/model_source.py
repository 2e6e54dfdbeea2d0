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
"""Where the transformer of a run comes from: a pre-trained MaskDM folder or Hub repo, a JSON config, or a preset.

A MaskDM training output holds the pipeline (`model_index.json`, `scheduler/`, `transformer/`). When the run used
EMA, `transformer/diffusion_pytorch_model.safetensors` holds the EMA weights (what the pipeline samples with) and
`transformer/diffusion_pytorch_model.non_ema.safetensors` the raw trained weights (diffusers' `non_ema` variant).
A checkpoint holds `transformer/` (raw) and `transformer_ema/` (EMA). Fine-tuning starts from the raw weights unless
`--init_from_ema` is given.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import MaskedDiTModel
from .checkpointing import EMA_SUBFOLDER, TRANSFORMER_SUBFOLDER
from .presets import preset_config


MODEL_CLASS_NAME = "MaskedDiTModel"
NON_EMA_VARIANT = "non_ema"
NON_EMA_WEIGHTS_NAME = f"diffusion_pytorch_model.{NON_EMA_VARIANT}.safetensors"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class TransformerSource:
    """A transformer to load: `MaskedDiTModel.from_pretrained(folder, subfolder=subfolder, variant=variant)`, `folder`
    local (a Hub repo is downloaded first); `name` is what the user passed, `is_ema` whether the weights are EMA's."""

    folder: str
    subfolder: str | None
    variant: str | None
    name: str
    is_ema: bool

    def read_config(self) -> dict[str, Any]:
        """The transformer's config, read from its `config.json` (no weights loaded)."""
        return _read_json(Path(self.folder, self.subfolder or "", "config.json"))

    def scheduler_config(self) -> dict[str, Any] | None:
        """The pipeline's `scheduler/scheduler_config.json` next to the transformer, when there is one."""
        path = Path(self.folder, "scheduler", "scheduler_config.json")
        return _read_json(path) if path.is_file() else None

    def vae_folder(self) -> str | None:
        """The pipeline's `vae/` next to the transformer (a latent-space MaskDM pipeline), when there is one."""
        path = Path(self.folder, "vae")
        return str(path) if (path / "config.json").is_file() else None

    def load(self):
        """Load the `MaskedDiTModel` (safetensors only)."""
        return MaskedDiTModel.from_pretrained(
            self.folder, subfolder=self.subfolder, variant=self.variant, use_safetensors=True
        )


def _class_name(folder: Path) -> str | None:
    try:
        return _read_json(folder / "config.json").get("_class_name")
    except (OSError, ValueError, AttributeError):  # No file, bad JSON, or not an object: no model here.
        return None


def resolve_pretrained_transformer(
    name_or_path: str,
    init_from_ema: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> TransformerSource:
    """
    Find the MaskDM transformer of `--pretrained_model_name_or_path`: a pipeline or training output folder, a training
    checkpoint, a bare `MaskedDiTModel` folder, or a Hub repo id of one of these (its configs and safetensors are
    downloaded). `init_from_ema` takes the EMA weights instead of the raw ones; `revision` and `cache_dir` are the
    Hub's.

    Raises:
        `ValueError`: naming `--pretrained_model_name_or_path` (or `--init_from_ema`) and what the folder holds instead.
    """
    folder = Path(name_or_path)
    if not folder.is_dir():
        from ..hub import download_pipeline_folder

        try:
            folder = Path(download_pipeline_folder(name_or_path, revision=revision, cache_dir=cache_dir))
        except Exception as error:  # Not found, offline, gated, malformed id: all mean the same to the user.
            raise ValueError(
                f"--pretrained_model_name_or_path={name_or_path!r} is neither a local folder nor a Hub repo that "
                f"could be fetched ({type(error).__name__}: {error}). Fix: pass a folder written by "
                "train_masked_pretrain.py (or its checkpoint-<step>), or a MaskDM repo id."
            ) from error

    transformer = folder / TRANSFORMER_SUBFOLDER
    has_transformer = _class_name(transformer) == MODEL_CLASS_NAME
    has_non_ema = has_transformer and (transformer / NON_EMA_WEIGHTS_NAME).is_file()
    if not (has_transformer or _class_name(folder) == MODEL_CLASS_NAME):
        found = _class_name(transformer) or _class_name(folder)
        what = f"a {found!r}" if found else f"found {sorted(p.name for p in folder.iterdir())[:12]}"
        raise ValueError(
            f"--pretrained_model_name_or_path={name_or_path!r} holds no MaskDM transformer ({what}; expected "
            f"transformer/config.json or config.json with _class_name {MODEL_CLASS_NAME!r}). Fix: pass the output "
            "folder (or a checkpoint-<step>) of train_masked_pretrain.py, or a saved MaskedDDPMPipeline."
        )
    has_ema = _class_name(folder / EMA_SUBFOLDER) == MODEL_CLASS_NAME
    if init_from_ema and not (has_ema or has_non_ema):
        raise ValueError(
            f"--init_from_ema: {name_or_path!r} holds no weights known to be EMA weights (no {EMA_SUBFOLDER}/, and no "
            f"{NON_EMA_WEIGHTS_NAME} beside the transformer's weights). Fix: drop --init_from_ema to start from the "
            "transformer's weights as they are (a pipeline saved from an EMA run without its raw weights already "
            "holds EMA weights)."
        )
    if init_from_ema:
        subfolder = EMA_SUBFOLDER if has_ema else TRANSFORMER_SUBFOLDER
    else:
        subfolder = TRANSFORMER_SUBFOLDER if has_transformer else None
    variant = NON_EMA_VARIANT if has_non_ema and not init_from_ema else None
    return TransformerSource(str(folder), subfolder, variant, name_or_path, init_from_ema)


def read_model_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """`--model_config`, a JSON object of `MaskedDiTModel` arguments (e.g. a saved `transformer/config.json`); a
    `ValueError` naming the flag for a missing file, bad JSON, or another model class."""
    try:
        config = _read_json(Path(path))
    except OSError as error:
        raise ValueError(f"--model_config={str(path)!r} cannot be read ({error.strerror or error}).") from error
    except ValueError as error:
        raise ValueError(f"--model_config={str(path)!r} is not valid JSON ({error}).") from error
    kind = config.get("_class_name", MODEL_CLASS_NAME) if isinstance(config, dict) else type(config).__name__
    if kind != MODEL_CLASS_NAME:
        raise ValueError(
            f"--model_config={str(path)!r} describes a {kind!r}, not a JSON object of {MODEL_CLASS_NAME} arguments."
        )
    return {key: value for key, value in config.items() if not key.startswith("_")}


def new_model_config(
    resolution: int,
    num_channels: int,
    num_class_embeds: int | None,
    model_config: dict[str, Any] | None = None,
    model_preset: str | None = None,
) -> dict[str, Any]:
    """The config of a new transformer, `--model_config` (as `read_model_config_file` read it) or `--model_preset`
    fitted to the data: keys the file leaves out (`sample_size`, `in_channels`, `num_class_embeds`) come from the data,
    keys it sets must agree (a `ValueError` names the flag and the key)."""
    if model_config is None:
        return preset_config(model_preset or "small", resolution, num_channels, num_class_embeds)
    config = dict(model_config)
    for key, value, flag in (
        ("sample_size", resolution, "--resolution"),
        ("in_channels", num_channels, "--num_channels (or the data)"),
        ("num_class_embeds", num_class_embeds, "the data's class labels"),
    ):
        if config.setdefault(key, value) != value:
            raise ValueError(
                f"--model_config sets {key}={config[key]!r} but {flag} gives {value!r}. Fix: "
                f"remove {key!r} from the file (it is then taken from the data), or change {flag}."
            )
    return config
