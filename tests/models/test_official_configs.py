"""The named configurations that build the official MaskDM networks, and the model switches they need."""

import pytest
import torch

from diffusers_maskdm import MaskedDiTModel, MaskGenerator, masked_mse_loss
from diffusers_maskdm.training.presets import MODEL_PRESETS, preset_config


# Parameter counts of the official code (jiachenlei/maskdm at 0e79a60): `models/mask_uvit.py`'s `MaskedUViT` built
# from `configs/ablation/pretrain/block4/celeba_90p.yml` (CelebA 64) and `configs/celebahq_base.yml` (CelebA-HQ 256),
# counted with `sum(p.numel() for p in model.parameters())`. By hand, for width D, P patches of p x p x 3 pixels:
# patch conv 3p^2 D + D, position table (1 + P) D, 13 blocks of 12 D^2 + 9 D (q/k/v without bias), 6 skip
# projections of 2 D^2 + D, final norm 2 D, output D 3p^2 + 3p^2.
OFFICIAL_PARAMETER_COUNTS = {"maskdm-celeba-64": 44_292_144, "maskdm-celebahq-256": 102_417_456}
OFFICIAL_PRESETS = {"maskdm-celeba-64": 64, "maskdm-celebahq-256": 256, "maskdm-small-256": 256}


def meta_model(config):
    """The model of `config` without allocating its weights (the 100 M-parameter one stays light)."""
    with torch.device("meta"):
        return MaskedDiTModel(**config)


def num_parameters(model):
    return sum(param.numel() for param in model.parameters())


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMETER_COUNTS))
def test_official_configurations_have_the_official_parameter_counts(name):
    model = meta_model(preset_config(name, OFFICIAL_PRESETS[name]))
    assert num_parameters(model) == OFFICIAL_PARAMETER_COUNTS[name]


def test_the_512_wide_network_at_256_px_differs_from_celeba_64_only_by_its_position_table():
    # The transfer configs use the CelebA 64 network at 256 px: 4,096 instead of 256 patches, 512 wide.
    at_256 = num_parameters(meta_model(preset_config("maskdm-small-256", 256)))
    assert at_256 == OFFICIAL_PARAMETER_COUNTS["maskdm-celeba-64"] + (4096 - 256) * 512


def test_the_size_preset_small_is_not_the_official_network():
    # Same width, depth and heads as the official CelebA 64 network, but this package's defaults.
    assert num_parameters(meta_model(preset_config("small", 64))) != OFFICIAL_PARAMETER_COUNTS["maskdm-celeba-64"]


def test_official_switches_build_the_official_layers():
    model = meta_model(preset_config("maskdm-celebahq-256", 256))
    assert len(model.transformer_blocks) == 13 and len(model.skip_projections) == 6  # 6 in, 1 middle, 6 out
    assert isinstance(model.time_embedding, torch.nn.Identity)
    attn = model.transformer_blocks[0].attn
    assert attn.to_q.bias is None and attn.to_k.bias is None and attn.to_v.bias is None
    assert attn.to_out[0].bias is not None
    assert model.transformer_blocks[0].ff.net[0].approximate == "none"  # exact GELU
    assert model.pos_embed.shape == (1, 1 + 64 * 64, 768)  # a row for the time token


def test_odd_and_even_depths_keep_todays_layout():
    # Today's configs keep their network: an odd depth has a middle block, an even one none.
    for num_layers, skips in ((7, 3), (6, 3), (13, 6)):
        model = MaskedDiTModel(
            sample_size=8, patch_size=2, hidden_size=16, num_layers=num_layers, num_attention_heads=2
        )
        assert len(model.skip_projections) == skips


def test_a_config_saved_before_the_switches_loads_as_before(tmp_path):
    old = {"sample_size": 8, "patch_size": 2, "hidden_size": 16, "num_layers": 3, "num_attention_heads": 2}
    torch.manual_seed(0)
    model = MaskedDiTModel(**old)
    model.save_pretrained(tmp_path)
    loaded = MaskedDiTModel.from_pretrained(tmp_path)
    assert loaded.config.use_time_mlp and loaded.config.attention_bias and not loaded.config.condition_token_positions
    assert loaded.config.activation_fn == "gelu-approximate" and loaded.config.weight_init == "xavier"
    assert loaded.config.norm_eps == 1e-6
    assert loaded.state_dict().keys() == model.state_dict().keys()
    sample = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded(sample, 5).sample, model(sample, 5).sample)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PRESETS))
def test_official_configurations_run_a_forward_and_a_masked_training_step_at_reduced_width(name):
    # The official switches, depth, grid and patch size, 16 wide. A forward over all 4,096 tokens of a 256 px image
    # takes seconds on two cores: there the forward keeps a quarter of them (the step keeps a tenth).
    config = {**preset_config(name, OFFICIAL_PRESETS[name]), "hidden_size": 16, "num_attention_heads": 2}
    torch.manual_seed(0)
    model = MaskedDiTModel(**config)
    size, grid = config["sample_size"], model.grid_size
    forward_mask = None if size == 64 else MaskGenerator("crop", 0.75)(1, grid, generator=torch.Generator())
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size), 999, mask=forward_mask).sample.shape == (1, 3, size, size)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mask = MaskGenerator("block", 0.9, block_size=4, rounding="floor")(
        2, grid, generator=torch.Generator().manual_seed(0)
    )
    noise = torch.randn(2, 3, size, size)
    before = [param.detach().clone() for param in model.parameters()]
    prediction = model(torch.randn(2, 3, size, size), torch.tensor([10, 500]), mask=mask).sample
    loss = masked_mse_loss(prediction, noise, mask, patch_size=config["patch_size"])
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert model.pos_embed.grad[0, 0].abs().sum() > 0  # the time token's position row is trained
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if a.ndim > 1)


def test_condition_token_positions_with_classes_and_their_checks():
    model = MaskedDiTModel(
        sample_size=8, patch_size=2, hidden_size=16, num_layers=3, num_attention_heads=2, num_class_embeds=3,
        condition_token_positions=True,
    )  # fmt: skip
    assert model.pos_embed.shape == (1, 2 + 16, 16)  # time and class tokens, then the patches
    mask = MaskGenerator("patch", 0.5)(2, 4, generator=torch.Generator().manual_seed(0))
    assert model(torch.randn(2, 3, 8, 8), 3, class_labels=torch.tensor([0, 2]), mask=mask).sample.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="condition_token_positions"):
        MaskedDiTModel(condition_token_positions=True, time_conditioning="adaln")
    with pytest.raises(ValueError, match="condition_token_positions"):
        MaskedDiTModel(condition_token_positions=True, position_embedding_type="sincos")
    with pytest.raises(ValueError, match="activation_fn"):
        MaskedDiTModel(activation_fn="relu")
    with pytest.raises(ValueError, match="use_time_mlp"):
        MaskedDiTModel(use_time_mlp="no")


def test_truncated_normal_initialisation():
    torch.manual_seed(0)
    model = MaskedDiTModel(hidden_size=64, num_attention_heads=2, weight_init="trunc_normal")
    weight = model.transformer_blocks[0].attn.to_q.weight
    assert abs(weight.std().item() - 0.02) < 0.002 and weight.abs().max() <= 2
    assert torch.all(model.transformer_blocks[0].attn.to_out[0].bias == 0)


def test_official_configurations_take_only_their_resolution():
    with pytest.raises(ValueError, match="--resolution 256"):
        preset_config("maskdm-celebahq-256", 64)
    assert preset_config("maskdm-celeba-64", 64, in_channels=1)["in_channels"] == 1
    assert {name for name in MODEL_PRESETS if name.startswith("maskdm-")} == set(OFFICIAL_PRESETS)


@pytest.mark.parametrize("time_conditioning", ["token", "adaln"])
def test_norm_eps_reaches_every_layer_norm_and_survives_saving(tmp_path, time_conditioning):
    config = {"sample_size": 8, "patch_size": 2, "hidden_size": 16, "num_layers": 3, "num_attention_heads": 2}
    model = MaskedDiTModel(**config, time_conditioning=time_conditioning, norm_eps=1e-5)
    norms = [module for module in model.modules() if isinstance(module, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 3 + 1 and all(norm.eps == 1e-5 for norm in norms)
    model.save_pretrained(tmp_path)
    loaded = MaskedDiTModel.from_pretrained(tmp_path)
    assert all(module.eps == 1e-5 for module in loaded.modules() if isinstance(module, torch.nn.LayerNorm))
    assert MaskedDiTModel(**config).norm_out.eps == 1e-6  # the default, as before
    assert all(preset_config(name, size)["norm_eps"] == 1e-5 for name, size in OFFICIAL_PRESETS.items())
    with pytest.raises(ValueError, match="norm_eps"):
        MaskedDiTModel(**config, norm_eps=0.0)
