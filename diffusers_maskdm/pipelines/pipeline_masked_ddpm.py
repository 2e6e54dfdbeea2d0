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
"""`MaskedDDPMPipeline`: sampling images from a `MaskedDiTModel` with any diffusers scheduler."""

# Imports are absolute, not relative: diffusers' `custom_pipeline=<this file>` loader copies this one file into its
# module cache, where relative imports would not resolve (see docs/hub.md).
import inspect
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, PNDMScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from diffusers_maskdm.hub import download_pipeline_folder, upload_pipeline_folder
from diffusers_maskdm.models.masked_dit import MaskedDiTModel


EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DPMSolverMultistepScheduler
        >>> from diffusers_maskdm import MaskedDDPMPipeline

        >>> pipe = MaskedDDPMPipeline.from_pretrained("your-name/maskdm-emoji-32")  # a local folder works too
        >>> pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        >>> images = pipe(batch_size=4, num_inference_steps=20, generator=torch.manual_seed(0)).images
        >>> images[0].save("sample.png")
        ```
"""

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
MAX_DIFFUSION_STEPS = 100_000  # 100x the paper's; the schedule's tables stay a few MB
HUB_DOWNLOAD_OPTIONS = ("revision", "cache_dir", "token", "local_files_only", "force_download")


def vae_scale_factor(vae: AutoencoderKL) -> int:
    """How many pixels one latent side covers, as diffusers' pipelines compute it (8 for Stable Diffusion's VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_vae(vae, name: str = "`vae`") -> None:
    """Raises a `ValueError` starting with `name` when `vae` is not a VAE like diffusers' `AutoencoderKL` or its config
    scales latents by a `scaling_factor` that is not finite and positive, or a `shift_factor` that is not finite."""
    config = getattr(vae, "config", {})
    if not (callable(getattr(vae, "decode", None)) and {"latent_channels", "block_out_channels"} <= set(config)):
        raise ValueError(
            f"{name} is a {type(vae).__name__}, not a VAE like diffusers' AutoencoderKL (with `decode` and a "
            "`latent_channels` config): pass the AutoencoderKL the model was trained with, or none in pixel space."
        )
    scale, shift = config.get("scaling_factor"), config.get("shift_factor")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (scale, shift or 0.0)) or scale <= 0:
        raise ValueError(
            f"{name} has scaling_factor={scale!r}, shift_factor={shift!r} in its config: latents are scaled as "
            "(z - shift_factor) * scaling_factor, which needs a finite scaling_factor > 0 and a finite shift_factor. "
            "Fix: set the VAE's published values in its config.json (0.18215 and null for Stable Diffusion's)."
        )


def check_pipeline_folder(folder: str | os.PathLike, expected_class: str) -> None:
    """Raises a `ValueError` saying what `folder` holds when it is not a saved `expected_class` pipeline (no
    `model_index.json`, another pipeline class, or a `transformer` component that is missing or not ours)."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:12] if folder.is_dir() else []
        hint = " It has a config.json: if it is a single model, load it with `MaskedDiTModel.from_pretrained`."
        raise ValueError(
            f"`pretrained_model_name_or_path` {str(folder)!r} is not a saved pipeline: it has no model_index.json "
            f"(found {found}).{hint if (folder / 'config.json').is_file() else ''}"
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(
            f"{index_path} is not valid JSON ({error}): restore the file, or save the pipeline again."
        ) from None
    if not isinstance(index, dict):
        raise ValueError(f"{index_path} holds a {type(index).__name__}, not a JSON object: restore the file.")
    if index.get("_class_name") != expected_class:
        raise ValueError(
            f"{str(folder)!r} holds a {index.get('_class_name')!r} pipeline (model_index.json `_class_name`), not a "
            f"{expected_class!r}; its components are {sorted(k for k in index if not k.startswith('_'))}. Load it "
            "with that pipeline's class, e.g. `diffusers.DiffusionPipeline.from_pretrained`."
        )
    transformer = index.get("transformer")
    if not transformer or transformer[-1] != "MaskedDiTModel" or not (folder / "transformer/config.json").is_file():
        raise ValueError(
            f"{str(folder)!r} says it is a {expected_class} but its `transformer` component is {transformer!r} "
            "(expected [..., 'MaskedDiTModel'] with a transformer/config.json): the folder is incomplete or edited."
        )
    # A scheduler builds its tables of `num_train_timesteps` floats as it loads: 1e10 would be 40 GB.
    scheduler_config = folder / "scheduler" / "scheduler_config.json"
    steps = (
        json.loads(scheduler_config.read_text(encoding="utf-8")).get("num_train_timesteps", 1000)
        if scheduler_config.is_file()
        else 1000
    )
    if not isinstance(steps, int) or not 1 <= steps <= MAX_DIFFUSION_STEPS:
        raise ValueError(
            f"{scheduler_config} sets num_train_timesteps={steps!r}: it must be an integer in [1, {MAX_DIFFUSION_STEPS}]"
            " (the file is damaged or edited). Fix: restore it, or save the pipeline again."
        )


class MaskedDDPMPipeline(DiffusionPipeline):
    r"""
    Pipeline for (class-conditional) image generation with a masked-pre-trained diffusion transformer (MaskDM).

    The pipeline runs the scheduler's loop on the transformer and maps the result from `[-1, 1]` to images: in pixel
    space without a VAE; with one (as diffusers' `DiTPipeline`), the loop runs on latents, which the VAE decodes to
    images of its pixel size. Swap the sampler as with any diffusers pipeline:
    `pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)` (DDPM, DDIM, DPM-Solver++, Euler,
    Euler ancestral, UniPC, PNDM, ...); the scheduler's `prediction_type`, `clip_sample`, `thresholding` settings apply.

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods
    implemented for all pipelines (downloading, saving, running on a particular device, etc.). `from_pretrained` also
    accepts a Hub repo id and `push_to_hub` keeps the repo's model card (see `diffusers_maskdm.hub`).

    Parameters:
        transformer ([`MaskedDiTModel`]):
            The denoiser. It is called on full images (no mask) while sampling.
        scheduler ([`SchedulerMixin`]):
            A scheduler to be used in combination with `transformer` to denoise the images, e.g. [`DDPMScheduler`]
            or [`DDIMScheduler`].
        id2label (`dict[int, str]`, *optional*):
            Class names of a class-conditional model, as in [`DiTPipeline`]: `{0: "cat", 1: "dog, puppy"}` (comma
            separated synonyms). Saved in `model_index.json`; `get_label_ids` maps names to class ids.
        vae ([`AutoencoderKL`], *optional*):
            For a latent-space model: the VAE whose latents (`latent_channels == transformer.config.in_channels`) the
            transformer denoises. The samples are decoded as `vae.decode(latents / scaling_factor + shift_factor)`
            (the VAE config's, as diffusers' pipelines do). Saved in `vae/`; `None` (a pixel-space model) by default.
    """

    model_cpu_offload_seq = "transformer->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        transformer: MaskedDiTModel,
        scheduler: SchedulerMixin,
        id2label: dict | None = None,
        vae: AutoencoderKL | None = None,
    ):
        super().__init__()
        if vae is not None:
            check_vae(vae)
            if vae.config.latent_channels != transformer.config.in_channels:
                raise ValueError(
                    f"`vae` makes latents of {vae.config.latent_channels} channels (vae.config.latent_channels) but "
                    f"the transformer takes {transformer.config.in_channels} (transformer.config.in_channels): pass "
                    "the VAE the model was trained with."
                )
        self.register_modules(transformer=transformer, scheduler=scheduler, vae=vae)
        # Image side / sample side, named as in diffusers' latent pipelines.
        self.vae_scale_factor = vae_scale_factor(vae) if vae is not None else 1
        self.labels = {}
        if id2label is not None:
            num_classes = transformer.config.num_class_embeds or 0
            id2label = {int(key): str(value) for key, value in id2label.items()}  # JSON keys are strings
            if not all(0 <= key < num_classes for key in id2label):
                raise ValueError(
                    f"`id2label` has class ids {sorted(id2label)} but the transformer has {num_classes} classes "
                    "(transformer.config.num_class_embeds): give names for ids in [0, num_class_embeds) only."
                )
            self.register_to_config(id2label=id2label)
            # Name -> id, each comma-separated synonym on its own, as DiTPipeline does.
            self.labels = dict(sorted((n.strip(), key) for key, value in id2label.items() for n in value.split(",")))

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        r"""
        Map class names (see `id2label`) to the class ids `class_labels` takes.

        Raises:
            `ValueError`: naming an unknown label and the known ones.
        """
        labels = [label] if isinstance(label, str) else list(label)
        unknown = [name for name in labels if name not in self.labels]
        if unknown:
            raise ValueError(f"`label` {unknown} not found: the pipeline's labels are {list(self.labels)}.")
        return [self.labels[name] for name in labels]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "MaskedDDPMPipeline":
        r"""
        [`DiffusionPipeline.from_pretrained`] (same arguments) from a local folder or a Hub repo id. A repo id is
        fetched by `diffusers_maskdm.hub.download_pipeline_folder` (configs and safetensors only, never code: diffusers'
        own download step does not know components that live outside diffusers), then loaded as a folder.

        Raises:
            `ValueError`: if the folder is not a `MaskedDDPMPipeline` (it says what it found instead).
        """
        path = str(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") != 1:
                raise ValueError(
                    f"`pretrained_model_name_or_path` {path!r} is neither a folder saved with `save_pretrained` nor a "
                    "Hub repo id of the form 'namespace/name'."
                )
            hub_options = {key: kwargs.pop(key) for key in HUB_DOWNLOAD_OPTIONS if key in kwargs}
            path = download_pipeline_folder(path, use_safetensors=kwargs.get("use_safetensors"), **hub_options)
        check_pipeline_folder(path, expected_class=cls.__name__)
        return super().from_pretrained(path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, push_to_hub: bool = False, **kwargs) -> None:
        r"""
        [`DiffusionPipeline.save_pretrained`]; with `push_to_hub=True` the folder is then uploaded by
        `diffusers_maskdm.hub.upload_pipeline_folder` (with `repo_id`, by default the folder's name, `commit_message`,
        `private`, `token`, `create_pr`), which keeps the folder's or the repo's MaskDM card.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in ("commit_message", "private", "token", "create_pr") if k in kwargs}
        repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(str(save_directory))))
        super().save_pretrained(save_directory, *args, **kwargs)
        if push_to_hub:
            upload_pipeline_folder(save_directory, repo_id, **hub_kwargs)

    def push_to_hub(self, repo_id: str, *, safe_serialization: bool = True, variant: str | None = None, **kwargs):
        r"""
        Upload the pipeline to the Hub with a MaskDM model card, where diffusers' `push_to_hub` would write a minimal
        one: saved to a temporary folder, then uploaded by `diffusers_maskdm.hub.upload_pipeline_folder`.

        Args:
            repo_id (`str`): The repo to push to (created if needed).
            safe_serialization (`bool`, *optional*, defaults to `True`): Save safetensors (always, for the Hub).
            variant (`str`, *optional*): Save weights as `*.{variant}.safetensors`.
            **kwargs: `commit_message`, `private`, `token`, `create_pr`, `model_card`, `sample_grid` and the card's
                arguments (`training`, `metrics`, `base_model`, ...), as `upload_pipeline_folder` takes them.

        Returns:
            `str`: the URL of the commit.
        """
        if safe_serialization is False:
            raise ValueError(
                "`safe_serialization=False` would upload pickled weights; MaskDM repos hold safetensors only: drop it."
            )
        with tempfile.TemporaryDirectory(prefix="maskdm-push-") as folder:
            self.save_pretrained(folder, variant=variant)
            return upload_pipeline_folder(folder, repo_id, **kwargs).commit_url

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        batch_size: int = 1,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 1000,
        output_type: str = "pil",
        return_dict: bool = True,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""
        The call function to the pipeline for generation.

        Args:
            batch_size (`int`, *optional*, defaults to 1):
                The number of images to generate. A sequence of `class_labels` sets it to its length.
            class_labels (`int`, `list[int]` or `torch.Tensor`, *optional*):
                For a class-conditional model: one label for all images, or one per image (`get_label_ids` maps
                class names to labels). `None` samples the null class (unconditional samples of a model trained
                with label dropout).
            guidance_scale (`float`, *optional*, defaults to 1.0):
                Classifier-free guidance: above 1 the prediction is pushed from the null class towards the
                requested one, `uncond + guidance_scale * (cond - uncond)`. Needs `class_labels`.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                A [`torch.Generator`](https://pytorch.org/docs/stable/generated/torch.Generator.html) to make
                generation deterministic, or one per image (then image `i` depends only on `generator[i]`).
            num_inference_steps (`int`, *optional*, defaults to 1000):
                The number of denoising steps; fast schedulers (DDIM, DPM-Solver++, UniPC) need 20-50.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` (`PIL.Image`), `"np"` (`np.ndarray`, NHWC in [0, 1]), `"pt"` (`torch.Tensor`, NCHW in [0, 1])
                or `"latent"` (what the transformer produced: latents before the VAE, or pixels in [-1, 1], unclamped).
            return_dict (`bool`, *optional*, defaults to `True`):
                Whether or not to return a [`~pipelines.ImagePipelineOutput`] instead of a plain tuple.
            eta (`float`, *optional*, defaults to 0.0):
                Corresponds to parameter eta (η) from the [DDIM](https://huggingface.co/papers/2010.02502) paper. Only
                applies to schedulers whose `step` takes it ([`DDIMScheduler`]); ignored by the others.
            latents (`torch.Tensor`, *optional*):
                The starting noise, (batch, in_channels, sample_size, sample_size) of the transformer's config (with a
                VAE: the latent shape), from a standard normal (scaled by the scheduler's `init_noise_sigma`, as drawn
                noise is). Drawn with `generator` if not given.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after every step as `callback_on_step_end(self, step, timestep, callback_kwargs)` with the
                tensors named in `callback_on_step_end_tensor_inputs`; a `"latents"` entry of its result replaces them.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `("latents",)`):
                The tensors passed to `callback_on_step_end`; any of `pipe._callback_tensor_inputs`.

        Examples:

        Returns:
            [`~pipelines.ImagePipelineOutput`] or `tuple`:
                If `return_dict` is `True`, [`~pipelines.ImagePipelineOutput`] is returned, otherwise a `tuple` is
                returned where the first element is a list with the generated images.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs
        batch_size, class_labels = self.check_inputs(
            batch_size, class_labels, guidance_scale, generator, num_inference_steps, output_type, latents,
            callback_on_step_end_tensor_inputs, eta,
        )  # fmt: skip
        config = self.transformer.config
        device = self._execution_device
        do_classifier_free_guidance = guidance_scale > 1.0

        # 2. Initial noise, scaled as the scheduler expects (sigma-space schedulers start from sigma_max)
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.transformer.dtype)
        latents = latents.to(device=device, dtype=self.transformer.dtype) * self.scheduler.init_noise_sigma
        if class_labels is not None:
            class_labels = class_labels.to(device)
            if do_classifier_free_guidance:  # conditional and null-class halves in one batch
                class_labels = torch.cat([class_labels, torch.full_like(class_labels, config.num_class_embeds)])

        # 3. Denoising loop. `eta` and `generator` go to the schedulers whose `step` takes them (as in diffusers'
        # pipelines); stochastic schedulers draw their step noise from `generator` (per image when it is a list).
        step_parameters = inspect.signature(self.scheduler.step).parameters
        extra_step_kwargs = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in step_parameters}
        # A model with `out_channels == 2 * in_channels` also predicts the variance: keep it only for schedulers that
        # use it, as diffusers' DiT pipeline does.
        learned_variance = self.scheduler.config.get("variance_type") in ("learned", "learned_range")
        channels = config.in_channels
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents, latents]) if do_classifier_free_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            model_output = self.transformer(model_input, t, class_labels=class_labels).sample
            if do_classifier_free_guidance:
                # Guidance moves the image prediction; predicted variance channels, if any, stay conditional.
                cond, uncond = model_output.chunk(2)
                guided = uncond[:, :channels] + guidance_scale * (cond[:, :channels] - uncond[:, :channels])
                model_output = torch.cat([guided, cond[:, channels:]], dim=1)
            if not learned_variance:
                model_output = model_output[:, :channels]
            # The scheduler applies its prediction_type, clip_sample and thresholding settings.
            latents = self.scheduler.step(model_output, t, latents, **extra_step_kwargs).prev_sample

            if callback_on_step_end is not None:
                step_tensors = {"latents": latents}  # the names of `_callback_tensor_inputs`
                callback_kwargs = {name: step_tensors[name] for name in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, i, t, callback_kwargs).pop("latents", latents)

        # 4. Post-process: latents are decoded to images with the VAE's scaling and shift, as diffusers' pipelines do;
        # `output_type="latent"` returns what the transformer produced, undecoded and unclamped, as they do too.
        if output_type == "latent":
            image = latents
        else:
            if self.vae is not None:
                latents = latents / self.vae.config.scaling_factor + (self.vae.config.get("shift_factor") or 0)
                latents = self.vae.decode(latents.to(self.vae.dtype)).sample
            image = (latents / 2 + 0.5).clamp(0, 1)
            if output_type != "pt":
                image = image.cpu().permute(0, 2, 3, 1).float().numpy()
                if output_type == "pil":
                    image = self.numpy_to_pil(image)

        self.maybe_free_model_hooks()

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)

    def check_inputs(
        self,
        batch_size: int,
        class_labels,
        guidance_scale: float,
        generator,
        num_inference_steps: int,
        output_type: str,
        latents: torch.Tensor | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = (),
        eta: float = 0.0,
    ) -> tuple[int, torch.LongTensor | None]:
        """Validate the call arguments; returns the batch size and the class labels as a (batch,) tensor or `None`.

        Raises:
            `ValueError`: naming the argument, its value and what is allowed.
        """
        for name, value in (("batch_size", batch_size), ("num_inference_steps", num_inference_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has {unknown}, which the pipeline does not pass: use names "
                f"from {self._callback_tensor_inputs}."
            )
        # PNDM's Runge-Kutta warm-up needs 4 steps; below that it fails with a broadcast error deep inside.
        pndm_warm_up = isinstance(self.scheduler, PNDMScheduler) and not self.scheduler.config.skip_prk_steps
        if pndm_warm_up and num_inference_steps < 4:
            raise ValueError(
                f"`num_inference_steps`={num_inference_steps} is too few for PNDMScheduler with its Runge-Kutta "
                "warm-up (it needs at least 4): use more steps, or "
                "`PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)`."
            )
        number = isinstance(guidance_scale, (int, float)) and not isinstance(guidance_scale, bool)
        if not (number and 0 <= guidance_scale < math.inf):
            raise ValueError(
                f"`guidance_scale` must be a finite number >= 0 (1 = no guidance), got {guidance_scale!r}."
            )
        if not (isinstance(eta, (int, float)) and 0 <= eta < math.inf):
            raise ValueError(f"`eta` must be a finite number >= 0 (0 = deterministic DDIM), got {eta!r}.")
        betas = getattr(self.scheduler, "betas", None)
        # A scheduler config with betas outside (0, 1) (e.g. an edited `beta_end`) samples black or NaN images.
        if torch.is_tensor(betas) and not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(
                f"the scheduler's betas must lie in (0, 1), got values from {betas.min().item()} to "
                f"{betas.max().item()} ({type(self.scheduler).__name__} config: beta_start="
                f"{self.scheduler.config.get('beta_start')}, beta_end={self.scheduler.config.get('beta_end')}): "
                "fix the scheduler config (e.g. beta_end=0.02)."
            )

        num_classes = self.transformer.config.num_class_embeds
        if guidance_scale > 1 and class_labels is None:
            needs = "`class_labels` to guide towards" if num_classes else "a class-conditional model"
            raise ValueError(
                f"`guidance_scale`={guidance_scale} needs {needs} (transformer.config.num_class_embeds="
                f"{num_classes}): pass class_labels, or use guidance_scale=1.0."
            )
        if class_labels is not None:
            if not num_classes:
                raise ValueError(
                    "`class_labels` were given, but this model is unconditional (transformer.config.num_class_embeds "
                    "is None): drop `class_labels`."
                )
            try:
                labels = torch.as_tensor(class_labels)
            except (TypeError, ValueError):  # strings: names are mapped by `get_label_ids`
                labels = torch.tensor(0.0)  # refused just below
            integers = not (labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool)
            if not integers or labels.ndim > 1 or not labels.numel():
                raise ValueError(
                    f"`class_labels` must be an int or a non-empty 1-d sequence of integers, got {class_labels!r}: "
                    "map class names to ids with `pipe.get_label_ids`."
                )
            if labels.ndim == 1:
                if batch_size not in (1, len(labels)):
                    raise ValueError(
                        f"`batch_size`={batch_size} does not match the {len(labels)} `class_labels`: pass one "
                        "label per image, or a single label for all of them."
                    )
                batch_size = len(labels)
            class_labels = labels.long().reshape(-1).expand(batch_size).clone()
            if bool(((class_labels < 0) | (class_labels >= num_classes)).any()):
                raise ValueError(
                    f"`class_labels` must lie in [0, {num_classes - 1}] (the model has {num_classes} classes), got "
                    f"values from {int(class_labels.min())} to {int(class_labels.max())}."
                )

        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators but {batch_size} images are requested: pass "
                "one generator per image, or a single generator."
            )
        config = self.transformer.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        if latents is not None and tuple(getattr(latents, "shape", ())) != shape:
            raise ValueError(
                f"`latents` must be a tensor of shape {shape} (batch_size, in_channels, sample_size, sample_size), "
                f"got {tuple(getattr(latents, 'shape', ())) or type(latents).__name__}: draw it with that shape, or "
                "set `batch_size` to its first dimension."
            )
        if latents is not None and not bool(latents.isfinite().all()):
            raise ValueError(
                f"`latents` hold {int((~latents.isfinite()).sum())} NaN or inf values: pass finite noise (e.g. from "
                "`randn_tensor`), or leave `latents` unset to draw it with `generator`."
            )
        return batch_size, class_labels
