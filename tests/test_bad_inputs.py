"""Nothing lost: one table of bad inputs across the package: each must fail with a `ValueError` (or, for a
missing install, an `ImportError`) whose message names the problem, raised by our own code at the public boundary,
not from deep inside torch."""

import json
import traceback

import datasets
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel, MaskGenerator, masked_mse_loss
from diffusers_maskdm.evaluation import load_feature_extractor, to_uint8_images
from diffusers_maskdm.flops import training_step_flops
from diffusers_maskdm.models.masked_dit import check_config_fingerprint, fingerprint_weights
from diffusers_maskdm.training import config_from_flags
from diffusers_maskdm.training.checkpointing import check_finite, resolve_resume_checkpoint, write_checkpoint
from diffusers_maskdm.training.data import (
    ImageTransform,
    build_train_dataset,
    check_output_outside_data,
    dataset_from_hf,
)
from diffusers_maskdm.training.resume import check_unchanged
from diffusers_maskdm.training.setup import setup


TINY = {"sample_size": 8, "patch_size": 2, "hidden_size": 32, "num_layers": 2, "num_attention_heads": 2}


def model(**overrides):
    return MaskedDiTModel(**{**TINY, **overrides})


def pipeline(**overrides):
    return MaskedDDPMPipeline(transformer=model(**overrides), scheduler=DDPMScheduler(num_train_timesteps=10))


def saved_model_with(tmp_path, key, value):
    model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    return lambda: MaskedDiTModel.from_pretrained(tmp_path)


def edited_model_index(tmp_path, text):
    pipeline().save_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text(text)
    return lambda: MaskedDDPMPipeline.from_pretrained(tmp_path)


def scheduler_with(**config):
    pipe = pipeline()
    pipe.scheduler = DDPMScheduler(num_train_timesteps=10, **config)
    return lambda: pipe(num_inference_steps=1)


def pipeline_with_scheduler_steps(tmp_path, steps):
    pipeline().save_pretrained(tmp_path)
    path = tmp_path / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_train_timesteps": steps}))
    return lambda: MaskedDDPMPipeline.from_pretrained(tmp_path)


def non_maskdm_folder(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return lambda: MaskedDDPMPipeline.from_pretrained(tmp_path)


def image_folder(tmp_path, files):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


def tiff_folder(tmp_path, value):
    """One 4x4 TIFF filled with `value`: mode "F" for a float, "I" for an int."""
    Image.fromarray(np.full((4, 4), value, dtype=np.float32 if isinstance(value, float) else np.int32)).save(
        tmp_path / "image.tiff"
    )
    return tmp_path


def stray_file_folder(tmp_path):
    for name in ("cats", "dogs", ""):
        (tmp_path / name).mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name / "image.png")
    return tmp_path


def script(tmp_path, *flags):
    """The training script's checks of its flags, as `python -m diffusers_maskdm.train` runs them first."""
    argv = ["--output_dir", str(tmp_path / "out"), "--model_preset", "tiny", *flags]
    return lambda: config_from_flags(argv)


def images(tmp_path, count=4, mode="RGB", folder="images"):
    """A folder of `count` random 16x16 PNGs."""
    import numpy as np
    from PIL import Image

    path = tmp_path / folder
    path.mkdir(parents=True, exist_ok=True)
    shape = (16, 16) if mode == "L" else (16, 16, 3)
    for index in range(count):
        Image.fromarray(np.full(shape, index * 40, dtype=np.uint8), mode=mode).save(path / f"{index}.png")
    return path


def run_setup(tmp_path, *flags, source=None):
    """The checks `setup` makes before the first step (model source, memory, data, output folder, Hub)."""
    argv = ["--output_dir", str(tmp_path / "out"), "--report_to", "none", "--num_cpu_threads", "1"]
    argv += ["--train_data_dir", str(images(tmp_path))] if "--train_data_dir" not in flags else []
    if source is None and not {"--model_preset", "--model_config", "--pretrained_model_name_or_path"} & set(flags):
        argv += ["--model_preset", "tiny"]
    return lambda: setup(config_from_flags([*argv, *flags]))


def pretrained(tmp_path, scheduler=None, **config):
    """A saved 16 px MaskDM pipeline folder, with scheduler config `scheduler` (a dict) when given."""
    folder = tmp_path / "pretrained"
    MaskedDDPMPipeline(transformer=model(sample_size=16, **config), scheduler=DDPMScheduler()).save_pretrained(folder)
    if scheduler is not None:
        path = folder / "scheduler" / "scheduler_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **scheduler}))
    return str(folder)


def tiny_vae(**config):
    from vae_testing import make_tiny_vae

    return make_tiny_vae(**config)


def tiny_vae_folder(tmp_path, **config):
    tiny_vae(**config).save_pretrained(tmp_path / "vae")
    return str(tmp_path / "vae")


def latent_pipeline(vae):
    return lambda: MaskedDDPMPipeline(transformer=model(in_channels=4), scheduler=DDPMScheduler(), vae=vae)


def not_a_vae():
    from diffusers import UNet2DModel

    blocks = dict(down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    return UNet2DModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 8), norm_num_groups=8, **blocks
    )


def model_config_file(tmp_path, text):
    path = tmp_path / "model.json"
    path.write_text(text)
    return str(path)


def fresh_run_into_checkpoints(tmp_path):
    (tmp_path / "out" / "checkpoint-2").mkdir(parents=True)
    return run_setup(tmp_path, "--resolution", "16")


def locked_output_dir(tmp_path):
    import fcntl

    (tmp_path / "out").mkdir()
    lock = open(tmp_path / "out" / ".lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    call = run_setup(tmp_path, "--resolution", "16")

    def locked():
        with lock:  # Held (as by another run) for the length of the call.
            call()

    return locked


def damaged_checkpoint(tmp_path):
    state = __import__("accelerate").PartialState(cpu=True)
    save = lambda folder: model().save_pretrained(f"{folder}/transformer")  # noqa: E731
    path = write_checkpoint(state, tmp_path, 2, save, {"global_step": 2})
    weights = path / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    return lambda: resolve_resume_checkpoint(tmp_path, "checkpoint-2")


def edited_pipeline_config(tmp_path, key, value):
    folder = tmp_path / "transformer"
    model().save_pretrained(folder)
    fingerprint_weights(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    return lambda: check_config_fingerprint(folder)


def data(**kwargs):
    return lambda: build_train_dataset(**kwargs)


def labelled_rows(labels):
    rows = {"image": [Image.new("RGB", (4, 4))] * len(labels), "label": labels}
    return lambda: dataset_from_hf(datasets.Dataset.from_dict(rows), label_column="label", resolution=4)


x = torch.zeros(2, 3, 8, 8)
mask16 = torch.zeros(2, 16, dtype=torch.bool)

# (id, a function of tmp_path returning the failing call, words the message must contain)
CASES = [
    # The model
    ("model-channels", lambda p: lambda: model()(torch.zeros(2, 1, 8, 8), 1), "in_channels"),
    ("model-size", lambda p: lambda: model()(torch.zeros(2, 3, 16, 16), 1), "sample_size"),
    ("model-ndim", lambda p: lambda: model()(torch.zeros(3, 8, 8), 1), "sample"),
    ("model-timestep-shape", lambda p: lambda: model()(x, torch.zeros(3)), "timestep"),
    (
        "model-labels-unconditional",
        lambda p: lambda: model()(x, 1, class_labels=torch.tensor([0, 1])),
        "unconditional",
    ),
    (
        "model-labels-range",
        lambda p: lambda: model(num_class_embeds=2)(x, 1, class_labels=torch.tensor([0, 7])),
        "class_labels",
    ),
    ("model-mask-shape", lambda p: lambda: model()(x, 1, mask=torch.zeros(2, 9, dtype=torch.bool)), "shape"),
    ("model-mask-dtype", lambda p: lambda: model()(x, 1, mask=torch.zeros(2, 16)), "bool"),
    (
        "model-mask-unequal",
        lambda p: (
            lambda: model()(
                x, 1, mask=torch.eye(2, 16, dtype=torch.bool) | torch.tensor([[False] * 15 + [True], [False] * 16])
            )
        ),
        "same number",
    ),
    ("model-mask-all", lambda p: lambda: model()(x, 1, mask=~mask16), "every patch"),
    ("model-ids-keep-empty", lambda p: lambda: model()(x, 1, ids_keep=torch.zeros(2, 0).long()), "ids_keep"),
    ("model-ids-keep-too-many", lambda p: lambda: model()(x, 1, ids_keep=torch.zeros(2, 17).long()), "1 to 16"),
    (
        "model-ids-keep-and-mask",
        lambda p: lambda: model()(x, 1, mask=mask16, ids_keep=torch.zeros(2, 4).long()),
        "and a mask",
    ),
    ("config-patch-size", lambda p: lambda: model(sample_size=10, patch_size=4), "patch_size"),
    ("config-heads", lambda p: lambda: model(hidden_size=30, num_attention_heads=4), "num_attention_heads"),
    ("config-file-negative", lambda p: saved_model_with(p, "num_layers", -3), "num_layers"),
    ("config-file-type", lambda p: saved_model_with(p, "hidden_size", "wide"), "hidden_size"),
    (
        "config-file-position-kind",
        lambda p: saved_model_with(p, "position_embedding_type", "rotary"),
        "position_embedding_type",
    ),
    # Masks
    ("mask-kind", lambda p: lambda: MaskGenerator("stripes"), "kind"),
    ("mask-rate-one", lambda p: lambda: MaskGenerator("patch", 1.0), "mask_rate"),
    ("mask-rate-negative", lambda p: lambda: MaskGenerator("patch", -0.5), "mask_rate"),
    ("mask-block-grid", lambda p: lambda: MaskGenerator("block", 0.5, block_size=3)(2, 8), "block_size"),
    ("mask-crop-too-big", lambda p: lambda: MaskGenerator("crop", 0.5, crop_size=10)(2, 8), "crop_size"),
    ("mask-hides-all", lambda p: lambda: MaskGenerator("patch", 0.95)(2, 2), "every patch"),
    # The loss
    ("loss-shapes", lambda p: lambda: masked_mse_loss(x, torch.zeros(2, 3, 4, 4), None, 2), "same shape"),
    ("loss-patch-size", lambda p: lambda: masked_mse_loss(x, x, mask16, 3), "patch_size"),
    ("loss-mask-shape", lambda p: lambda: masked_mse_loss(x, x, torch.zeros(2, 4, dtype=torch.bool), 2), "shape"),
    # The pipeline
    ("pipe-batch-size", lambda p: lambda: pipeline()(batch_size=0, num_inference_steps=1), "batch_size"),
    ("pipe-steps", lambda p: lambda: pipeline()(num_inference_steps=0), "num_inference_steps"),
    ("pipe-output-type", lambda p: lambda: pipeline()(num_inference_steps=1, output_type="jpeg"), "output_type"),
    (
        "pipe-generators",
        lambda p: lambda: pipeline()(batch_size=3, num_inference_steps=1, generator=[torch.Generator()] * 2),
        "generator",
    ),
    ("pipe-guidance-nan", lambda p: lambda: pipeline()(num_inference_steps=1, guidance_scale=float("nan")), "finite"),
    ("pipe-guidance-inf", lambda p: lambda: pipeline()(num_inference_steps=1, guidance_scale=float("inf")), "finite"),
    ("pipe-scheduler-beta-nan", lambda p: scheduler_with(beta_end=float("nan")), "betas must lie in"),
    ("pipe-scheduler-beta-five", lambda p: scheduler_with(beta_end=5.0), "beta_end=5.0"),
    ("pipe-model-index-truncated", lambda p: edited_model_index(p, '{"_class_name": "Mask'), "not valid JSON"),
    ("pipe-model-index-list", lambda p: edited_model_index(p, "[1, 2]"), "not a JSON object"),
    ("model-timestep-nan", lambda p: lambda: model()(x, float("nan")), "finite"),
    ("model-timestep-inf-tensor", lambda p: lambda: model()(x, torch.tensor([float("inf")] * 2)), "finite"),
    ("model-sample-float64", lambda p: lambda: model()(x.double(), 1), "float64"),
    ("config-mlp-ratio-nan", lambda p: lambda: model(mlp_ratio=float("nan")), "mlp_ratio"),
    (
        "pipe-guidance-unconditional",
        lambda p: lambda: pipeline()(num_inference_steps=1, guidance_scale=3.0),
        "guidance_scale",
    ),
    (
        "pipe-labels-unconditional",
        lambda p: lambda: pipeline()(num_inference_steps=1, class_labels=[1]),
        "class_labels",
    ),
    (
        "pipe-labels-range",
        lambda p: lambda: pipeline(num_class_embeds=2)(num_inference_steps=1, class_labels=[5]),
        "class_labels",
    ),
    ("pipe-not-maskdm", non_maskdm_folder, "StableDiffusionPipeline"),
    (
        "pipe-labels-strings",
        lambda p: lambda: pipeline(num_class_embeds=4)(num_inference_steps=1, class_labels=["3"]),
        "got ['3']: map class names to ids with `pipe.get_label_ids`",
    ),
    ("pipe-eta-nan", lambda p: lambda: pipeline()(num_inference_steps=1, eta=float("nan")), "`eta` must be a finite"),
    ("pipe-eta-negative", lambda p: lambda: pipeline()(num_inference_steps=1, eta=-1.0), "got -1.0"),
    (
        "pipe-latents-nan",
        lambda p: lambda: pipeline()(num_inference_steps=1, latents=torch.full((1, 3, 8, 8), float("nan"))),
        "`latents` hold 192 NaN or inf values",
    ),
    ("pipe-vae-not-a-vae", lambda p: latent_pipeline(not_a_vae()), "is a UNet2DModel, not a VAE"),
    (
        "pipe-vae-scaling-zero",
        lambda p: latent_pipeline(tiny_vae(scaling_factor=0.0)),
        "`vae` has scaling_factor=0.0",
    ),
    # The training script's flags, on their own (tests/training/test_args.py has more)
    ("script-rate-one", lambda p: script(p, "--mask_rate", "1.0"), "--mask_rate"),
    ("script-rate-nan", lambda p: script(p, "--mask_rate", "nan"), "--mask_rate"),
    ("script-missing-data-dir", lambda p: script(p, "--train_data_dir", str(p / "nowhere")), "--train_data_dir"),
    ("script-lr-inf", lambda p: script(p, "--learning_rate", "inf"), "--learning_rate=inf must be a finite"),
    ("script-streaming-no-dataset", lambda p: script(p, "--streaming", "--max_train_steps", "2"), "--dataset_name"),
    ("script-streaming-no-steps", lambda p: script(p, "--streaming", "--dataset_name", "x"), "--max_train_steps"),
    (
        "script-streaming-subset",
        lambda p: script(
            p, "--streaming", "--dataset_name", "x", "--max_train_steps", "2", "--max_train_samples", "9"
        ),
        "--max_train_samples cannot be used with --streaming",
    ),
    (
        "script-streaming-vae",
        lambda p: script(p, "--streaming", "--dataset_name", "x", "--max_train_steps", "2", "--vae_name_or_path", "v"),
        "--vae_name_or_path cannot be used with --streaming",
    ),
    ("script-lr-nan", lambda p: script(p, "--learning_rate", "nan"), "--learning_rate=nan must be a finite"),
    ("script-lr-zero", lambda p: script(p, "--learning_rate", "0"), "--learning_rate"),
    ("script-beta1-nan", lambda p: script(p, "--adam_beta1", "nan"), "--adam_beta1"),
    ("script-beta2-one", lambda p: script(p, "--adam_beta2", "1"), "--adam_beta2"),
    ("script-epsilon-inf", lambda p: script(p, "--adam_epsilon", "inf"), "--adam_epsilon"),
    ("script-grad-norm-inf", lambda p: script(p, "--max_grad_norm", "inf"), "--max_grad_norm"),
    ("script-ema-decay", lambda p: script(p, "--ema_decay", "1.5"), "--ema_decay"),
    ("script-ema-power-nan", lambda p: script(p, "--ema_power", "nan"), "--ema_power"),
    ("script-block-size-zero", lambda p: script(p, "--mask_block_size", "0"), "--mask_block_size"),
    ("script-crop-for-block", lambda p: script(p, "--mask_crop_size", "2"), "--mask_crop_size"),
    ("script-resolution-one", lambda p: script(p, "--resolution", "1"), "--resolution"),
    ("script-batch-zero", lambda p: script(p, "--train_batch_size", "0"), "--train_batch_size"),
    ("script-steps-zero", lambda p: script(p, "--max_train_steps", "0"), "--max_train_steps"),
    ("script-ddpm-steps-zero", lambda p: script(p, "--ddpm_num_steps", "0"), "--ddpm_num_steps"),
    ("script-warmup-negative", lambda p: script(p, "--lr_warmup_steps", "-1"), "--lr_warmup_steps"),
    ("script-seed-negative", lambda p: script(p, "--seed", "-1"), "--seed"),
    ("script-label-dropout-one", lambda p: script(p, "--class_dropout_prob", "1"), "--class_dropout_prob"),
    ("script-fid-one-image", lambda p: script(p, "--eval_fid_num_images", "1"), "--eval_fid_num_images"),
    ("script-two-sources", lambda p: script(p, "--model_config", "x.json"), "Pass only one"),
    ("script-ema-init-alone", lambda p: lambda: config_from_flags(["--init_from_ema"]), "--init_from_ema"),
    (
        "script-overwrite-and-resume",
        lambda p: script(p, "--overwrite_output_dir", "--resume_from_checkpoint", "latest"),
        "--overwrite_output_dir",
    ),
    ("script-fp16-on-cpu", lambda p: script(p, "--mixed_precision", "fp16", "--cpu"), "--mixed_precision"),
    (
        "script-output-is-a-file",
        lambda p: (p / "f").touch() or script(p, "--output_dir", str(p / "f")),
        "--output_dir",
    ),
    # The training script's flags against the model source, the machine, the data and the output folder (`setup`)
    ("setup-block-grid", lambda p: run_setup(p, "--mask_rate", "0.9", "--mask_block_size", "3"), "--mask_block_size"),
    (
        "setup-crop-too-big",
        lambda p: run_setup(p, "--mask_type", "crop", "--mask_rate", "0.5", "--mask_crop_size", "40"),
        "--mask_crop_size",
    ),
    ("setup-hides-every-patch", lambda p: run_setup(p, "--resolution", "8", "--mask_rate", "0.95"), "every patch"),
    ("setup-resolution-no-preset", lambda p: run_setup(p, "--resolution", "31"), "--resolution=31"),
    ("setup-absurd-resolution", lambda p: run_setup(p, "--resolution", "1000000"), "GiB"),
    (
        "setup-inference-steps-over-diffusion-steps",
        lambda p: run_setup(p, "--ddpm_num_steps", "10", "--validation_inference_steps", "50"),
        "--validation_inference_steps=50",
    ),
    (
        "setup-not-a-maskdm-folder",
        lambda p: run_setup(p, "--pretrained_model_name_or_path", str(p)),
        "--pretrained_model_name_or_path",
    ),
    (
        "setup-pretrained-resolution",
        lambda p: run_setup(p, "--pretrained_model_name_or_path", pretrained(p), "--resolution", "32"),
        "--resolution 16",
    ),
    (
        "setup-ema-init-without-ema",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p), "--resolution", "16", "--init_from_ema"
        ),
        "--init_from_ema",
    ),
    (
        "setup-pretrained-beta-nan",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p, {"beta_end": float("nan")}), "--resolution", "16"
        ),
        "beta_end",
    ),
    (
        "setup-pretrained-beta-five",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p, {"beta_end": 5.0}), "--resolution", "16"
        ),
        "beta_end < 1",
    ),
    (
        "setup-pretrained-prediction-type",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p, {"prediction_type": "noise"}), "--resolution", "16"
        ),
        "--prediction_type",
    ),
    (
        "setup-pretrained-channels",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p), "--resolution", "16", "--num_channels", "1"
        ),
        "--num_channels 3",
    ),
    (
        "setup-pretrained-classes",
        lambda p: run_setup(
            p, "--pretrained_model_name_or_path", pretrained(p, num_class_embeds=3), "--resolution", "16"
        ),
        "num_class_embeds=3",
    ),
    ("setup-vae-subfolder-alone", lambda p: run_setup(p, "--vae_subfolder", "vae"), "--vae_name_or_path"),
    ("setup-vae-missing", lambda p: run_setup(p, "--vae_name_or_path", str(p / "no-vae")), "AutoencoderKL"),
    (
        "setup-vae-resolution",
        lambda p: run_setup(p, "--vae_name_or_path", tiny_vae_folder(p), "--resolution", "15"),
        "--resolution 14",
    ),
    (
        "setup-vae-channels",
        lambda p: run_setup(p, "--vae_name_or_path", tiny_vae_folder(p), "--resolution", "16", "--num_channels", "1"),
        "--num_channels=1 but the VAE encodes 3-channel images",
    ),
    (
        "setup-vae-scaling-zero",
        lambda p: run_setup(p, "--vae_name_or_path", tiny_vae_folder(p, scaling_factor=0.0), "--resolution", "16"),
        "/vae' has scaling_factor=0.0, shift_factor=None in its config",
    ),
    (
        "setup-vae-scaling-nan",
        lambda p: run_setup(p, "--vae_name_or_path", tiny_vae_folder(p, scaling_factor=float("nan"))),
        "has scaling_factor=nan",
    ),
    (
        "setup-vae-shift-inf",
        lambda p: run_setup(p, "--vae_name_or_path", tiny_vae_folder(p, shift_factor=float("inf"))),
        "shift_factor=inf in its config",
    ),
    (
        "setup-pixel-model-with-vae",
        lambda p: run_setup(
            p,
            "--pretrained_model_name_or_path",
            pretrained(p),
            "--vae_name_or_path",
            tiny_vae_folder(p),
            "--resolution",
            "32",
        ),
        "or none for a pixel-space model",
    ),
    (
        "setup-latent-model-without-vae",
        lambda p: run_setup(p, "--pretrained_model_name_or_path", pretrained(p, in_channels=4), "--resolution", "16"),
        "--vae_name_or_path",
    ),
    (
        "setup-model-config-json",
        lambda p: run_setup(p, "--model_config", model_config_file(p, "{no")),
        "not valid JSON",
    ),
    ("setup-model-config-missing", lambda p: run_setup(p, "--model_config", str(p / "no.json")), "cannot be read"),
    (
        "setup-model-config-list",
        lambda p: run_setup(p, "--model_config", model_config_file(p, "[1, 2]")),
        "JSON object",
    ),
    (
        "setup-model-config-sample-size",
        lambda p: run_setup(p, "--model_config", model_config_file(p, '{"sample_size": 64}')),
        "sample_size=64",
    ),
    (
        "setup-model-config-patch",
        lambda p: run_setup(p, "--model_config", model_config_file(p, '{"patch_size": 3}'), "--resolution", "16"),
        "patch_size=3",
    ),
    ("setup-fresh-run-into-checkpoints", fresh_run_into_checkpoints, "--resume_from_checkpoint latest"),
    ("setup-output-dir-in-use", locked_output_dir, "in use by another training run"),
    (
        "setup-output-dir-under-a-file",
        lambda p: (p / "f").touch() or run_setup(p, "--output_dir", str(p / "f" / "out")),
        "cannot be created",
    ),
    ("setup-push-offline", lambda p: run_setup(p, "--resolution", "16", "--push_to_hub"), "--push_to_hub"),
    # Checkpoints and saved pipelines
    ("resume-damaged-checkpoint", damaged_checkpoint, "does not match its checksum"),
    (
        "resume-missing-checkpoint",
        lambda p: lambda: resolve_resume_checkpoint(p, "checkpoint-9"),
        "--resume_from_checkpoint='checkpoint-9' does not exist",
    ),
    (
        "resume-other-model",
        lambda p: lambda: check_unchanged(p, dict(model(num_attention_heads=4).config), dict(model().config), "a"),
        "num_attention_heads=4 in the checkpoint, 2 in this run",
    ),
    (
        "checkpoint-nan-weights",
        lambda p: lambda: check_finite([torch.tensor([0.0, float("nan")])], "transformer's weights"),
        "NaN or inf",
    ),
    ("pipeline-config-heads", lambda p: edited_pipeline_config(p, "num_attention_heads", 4), "num_attention_heads"),
    ("pipeline-config-depth", lambda p: edited_pipeline_config(p, "num_layers", 3), "num_layers=3"),
    (
        "pipeline-config-positions",
        lambda p: edited_pipeline_config(p, "position_embedding_type", "none"),
        "position_embedding_type",
    ),
    # Sizes that would be allocated before anything is compared: 40 GB of schedule tables, terabytes of weights
    ("pipeline-scheduler-steps-huge", lambda p: pipeline_with_scheduler_steps(p, 10**10), "num_train_timesteps=1000"),
    ("pipeline-config-width-huge", lambda p: saved_model_with(p, "hidden_size", 10**9), "hidden_size=1000000000"),
    (
        "pipeline-config-classes-huge",
        lambda p: saved_model_with(p, "num_class_embeds", 10**10),
        "num_class_embeds=10000000000",
    ),
    # Data loaders
    ("data-missing-dir", lambda p: data(train_data_dir=p / "nope"), "train_data_dir"),
    ("data-empty-dir", lambda p: data(train_data_dir=p), "train_data_dir"),
    (
        "data-only-corrupt",
        lambda p: data(train_data_dir=image_folder(p, {"a.png": b"not a png", "b.jpg": b"\x00" * 10})),
        "train_data_dir",
    ),
    ("data-two-sources", lambda p: data(dataset_name="x", train_data_dir=p), "train_data_dir"),
    # Data that would be read wrongly: float or 32-bit images beyond their range, stray files, output inside the data
    ("data-float-range", lambda p: data(train_data_dir=tiff_folder(p, 255.0)), "mode 'F' with values in [255, 255]"),
    ("data-float-nan", lambda p: data(train_data_dir=tiff_folder(p, float("nan"))), "mode 'F' with values in [nan"),
    ("data-int-range", lambda p: data(train_data_dir=tiff_folder(p, 70000)), "mode 'I' with values in [70000"),
    ("data-label-huge", lambda p: labelled_rows([0, 3_000_000_000]), "has the label 3000000000: class labels must"),
    ("data-mode-la", lambda p: lambda: ImageTransform(4)(Image.new("La", (4, 4))), "mode 'La'"),
    ("data-stray-file", lambda p: data(train_data_dir=stray_file_folder(p)), "beside its class sub-folders"),
    (
        "data-output-inside",
        lambda p: lambda: check_output_outside_data(p / "data" / "run", p / "data"),
        "is inside --train_data_dir",
    ),
    # Evaluation and compute accounting
    ("eval-extractor-name", lambda p: lambda: load_feature_extractor("resnet"), "feature_extractor"),
    ("eval-image-range", lambda p: lambda: to_uint8_images(torch.full((2, 3, 8, 8), -1.0)), "(images + 1) / 2"),
    ("flops-batch", lambda p: lambda: training_step_flops(model(), 0), "batch_size"),
]


@pytest.mark.parametrize("case_id, make_call, words", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly(tmp_path, case_id, make_call, words):
    call = make_call(tmp_path)
    with pytest.raises(ValueError) as excinfo:
        call()
    message = str(excinfo.value)
    assert words in message, message
    # Raised by our own code, at the boundary: the innermost frame is in this package, not in torch or diffusers.
    innermost = traceback.extract_tb(excinfo.tb)[-1].filename
    assert "diffusers_maskdm" in innermost, f"{case_id} was raised from {innermost}: {message}"


def test_the_table_is_wide():
    assert len(CASES) >= 80
