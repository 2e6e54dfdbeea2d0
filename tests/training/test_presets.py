"""`--recipe`: the official MaskDM training settings in one flag, explicit flags winning; `--mask_rounding`."""

import shlex
from pathlib import Path

import pytest

from diffusers_maskdm.training import parse_args
from diffusers_maskdm.training.presets import RECIPES, recipe_summary


def parse(tmp_path, *flags):
    return parse_args(["--output_dir", str(tmp_path / "out"), *flags])


# The official configs' values (jiachenlei/maskdm), written out rather than read from `RECIPES`.
OFFICIAL_OPTIMISER = {
    "adam_beta1": 0.99,
    "adam_beta2": 0.99,
    "adam_weight_decay": 0.03,
    "use_ema": True,
    "ema_decay": 0.999,
    "ema_power": pytest.approx(2 / 3),
    "ema_inv_gamma": 1.0,
    "prediction_type": "epsilon",
}
OFFICIAL = {
    "maskdm-pretrain-64": {"resolution": 64, "learning_rate": 2e-4, "lr_scheduler": "constant",
                           "ddpm_beta_schedule": "linear", "mask_type": "block", "mask_block_size": 4,
                           "mask_rate": 0.9, "mask_rounding": "floor"},
    "maskdm-finetune-64": {"resolution": 64, "learning_rate": 2e-4, "lr_scheduler": "constant",
                           "ddpm_beta_schedule": "linear", "mask_rate": 0.0},
    "maskdm-pretrain-256": {"resolution": 256, "learning_rate": 2e-4, "lr_scheduler": "constant",
                            "max_grad_norm": 1.0, "ddpm_beta_schedule": "squaredcos_cap_v2", "mask_block_size": 4,
                            "mask_rate": 0.9, "mask_rounding": "floor"},
    "maskdm-finetune-256": {"resolution": 256, "learning_rate": 1e-5, "lr_scheduler": "constant_with_warmup",
                            "lr_warmup_steps": 5000, "max_grad_norm": 1.0, "ddpm_beta_schedule": "squaredcos_cap_v2",
                            "mask_rate": 0.0},
    "maskdm-transfer-256": {"resolution": 256, "learning_rate": 5e-5, "lr_scheduler": "constant",
                            "ddpm_beta_schedule": "squaredcos_cap_v2", "random_flip": True, "mask_rate": 0.0},
}  # fmt: skip
UNCLIPPED = ("maskdm-pretrain-64", "maskdm-finetune-64", "maskdm-transfer-256")  # `clip_grad: null`


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_a_recipe_resolves_to_the_official_values(tmp_path, name):
    config = parse(tmp_path, "--recipe", name)
    for dest, value in {**OFFICIAL_OPTIMISER, **OFFICIAL[name]}.items():
        assert getattr(config, dest) == value, dest
    if name in UNCLIPPED:
        assert config.max_grad_norm >= 1e9
    assert config.recipe_values == {dest: getattr(config, dest) for dest in RECIPES[name]}
    assert recipe_summary(config).startswith(f"Recipe {name}: ") and "changed by flags" not in recipe_summary(config)
    assert set(OFFICIAL) == set(RECIPES)


def test_without_a_recipe_nothing_changes(tmp_path):
    config = parse(tmp_path)
    assert config.recipe is None and config.recipe_values == {}
    assert (config.adam_beta1, config.adam_beta2, config.ema_decay, config.lr_scheduler) == (
        0.9,
        0.999,
        0.9999,
        "cosine",
    )
    assert config.mask_rounding == "nearest"


def test_explicit_flags_win_even_when_they_equal_the_default(tmp_path):
    config = parse(
        tmp_path, "--recipe", "maskdm-finetune-256", "--learning_rate", "2e-5", "--adam_beta1", "0.9",
        "--ema_max_decay", "0.9999", "--resolution", "128",
    )  # fmt: skip
    assert (config.learning_rate, config.adam_beta1, config.ema_decay, config.resolution) == (2e-5, 0.9, 0.9999, 128)
    assert (config.adam_beta2, config.lr_warmup_steps, config.ddpm_beta_schedule) == (0.99, 5000, "squaredcos_cap_v2")
    assert config.recipe_values["learning_rate"] == 2e-5
    summary = recipe_summary(config)
    assert "learning_rate=2e-05" in summary
    assert "changed by flags: resolution, learning_rate, adam_beta1, ema_decay" in summary


def test_other_mask_kinds_drop_the_recipes_block_size(tmp_path):
    config = parse(tmp_path, "--recipe", "maskdm-pretrain-64", "--mask_type", "patch", "--mask_rate", "0.5")
    assert (config.mask_type, config.mask_rate, config.mask_block_size, config.mask_rounding) == (
        "patch",
        0.5,
        None,
        "floor",
    )


@pytest.mark.parametrize(
    "recipe, mask_rate, fix",
    [
        ("maskdm-pretrain-64", "0", "--recipe maskdm-finetune-64"),
        ("maskdm-finetune-256", "0.9", "--recipe maskdm-pretrain-256"),
        ("maskdm-transfer-256", "0.5", "--recipe maskdm-pretrain-256"),
    ],
)
def test_a_mask_rate_of_the_other_stage_is_refused_naming_the_fix(tmp_path, capsys, recipe, mask_rate, fix):
    with pytest.raises(SystemExit) as exit_info:
        parse(tmp_path, "--recipe", recipe, "--mask_rate", mask_rate)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--recipe {recipe}" in error and fix in error and "drop --mask_rate" in error


def test_mask_rounding_flag(tmp_path, capsys):
    assert parse(tmp_path, "--mask_rounding", "floor").mask_rounding == "floor"
    with pytest.raises(SystemExit):
        parse(tmp_path, "--mask_rounding", "ceil")
    assert "--mask_rounding" in capsys.readouterr().err


def test_the_commands_to_rerun_the_paper_parse(tmp_path, monkeypatch):
    """Every training command of docs/training.md's "To rerun the paper" uses flags that exist, in values they take."""
    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    block = text[text.index("## To rerun the paper") :].split("```bash\n")[1].split("```")[0]
    commands = " ".join(line for line in block.splitlines() if not line.startswith(("#", "LAUNCH="))).replace("\\", "")
    commands = [shlex.split(command) for command in commands.split("$LAUNCH")[1:]]
    assert len(commands) == 6 and {argv[argv.index("--recipe") + 1] for argv in commands} == set(RECIPES)
    monkeypatch.chdir(tmp_path)
    for folder in ("celeba", "celebahq", "vggface2"):
        (tmp_path / folder).mkdir()
    for argv in commands:
        config = parse_args([*argv, "--report_to", "none"])
        assert config.recipe_values and config.train_data_dir.rstrip("/") in ("celeba", "celebahq", "vggface2")


def test_the_latent_recipe_in_the_docs_parses(tmp_path, monkeypatch):
    """The commands of docs/training.md's "Latent space" use flags that exist, in values they take."""
    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    block = text[text.index("## Latent space") :].split("```bash\n")[1].split("```")[0]
    commands = block.replace("\\\n", " ").split("accelerate launch examples/train_masked_pretrain.py")[1:]
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faces_256").mkdir()
    configs = [parse_args([*shlex.split(command), "--report_to", "none"]) for command in commands]
    assert {config.stage for config in configs} == {"pretrain", "finetune"}
    assert configs[0].vae_name_or_path == "stabilityai/sd-vae-ft-mse" and configs[0].resolution == 256
