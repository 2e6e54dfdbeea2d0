"""Nothing lost: one table of bad inputs across the package: each must fail with a `ValueError` (or, for a
missing install, an `ImportError`) whose message names the problem, raised by our own code at the public boundary,
not from deep inside torch."""

import json
import traceback

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from diffusers_maskdm import MaskedDDPMPipeline, MaskedDiTModel, MaskGenerator, masked_mse_loss
from diffusers_maskdm.evaluation import load_feature_extractor, to_uint8_images
from diffusers_maskdm.flops import training_step_flops
from diffusers_maskdm.training import build_parser, validate_args
from diffusers_maskdm.training.data import ImageTransform, build_train_dataset, check_output_outside_data


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
    """The training script's checks, as `examples/train_masked_pretrain.py` runs them before any training."""
    argv = ["--output_dir", str(tmp_path / "out"), "--model_preset", "tiny", *flags]
    return lambda: validate_args(build_parser().parse_args(argv))


def data(**kwargs):
    return lambda: build_train_dataset(**kwargs)


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
    # The training script's flags (tests/training/test_args.py has 40 more)
    (
        "script-block-grid",
        lambda p: script(p, "--mask_type", "block", "--mask_rate", "0.9", "--mask_block_size", "3"),
        "--mask_block_size",
    ),
    (
        "script-crop-too-big",
        lambda p: script(p, "--mask_type", "crop", "--mask_rate", "0.5", "--mask_crop_size", "40"),
        "--mask_crop_size",
    ),
    ("script-rate-one", lambda p: script(p, "--mask_rate", "1.0"), "--mask_rate"),
    ("script-missing-data-dir", lambda p: script(p, "--train_data_dir", str(p / "nowhere")), "--train_data_dir"),
    (
        "script-not-a-maskdm-folder",
        lambda p: script(p, "--pretrained_model_name_or_path", str(p), "--mask_rate", "0"),
        "--pretrained_model_name_or_path",
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
    assert len(CASES) >= 30
