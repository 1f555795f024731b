"""The heads: SimSiam's BN ablation (Chen & He 2021, Table 4 and sec. 4.5) spelled out layer by layer."""
import pytest
import torch
from torch import nn

from pretrain.config import load_config
from pretrain.heads import mlp
from pretrain.methods import build_method
from sslt_core.checkpoints import read_encoder

L, B, R = "Linear", "BatchNorm1d", "ReLU"
# Table 4: "none" - no BN; "hidden" - BN on the hidden layers of projector and predictor; "default" - the projector
# has BN on every layer, its output BN without affine, the predictor on its hidden layer; "all" - also after the
# predictor's output.
EXPECTED = {
    "none": ([L, R, L, R, L], [L, R, L]),
    "hidden": ([L, B, R, L, B, R, L], [L, B, R, L]),
    "default": ([L, B, R, L, B, R, L, B], [L, B, R, L]),
    "all": ([L, B, R, L, B, R, L, B], [L, B, R, L, B]),
}


@pytest.mark.parametrize("bn", sorted(EXPECTED))
def test_simsiam_bn_ablation_places_bn_as_table_4(bn):
    model = build_method(load_config(None, ["method=simsiam", "model.arch=resnet18", f"model.bn={bn}",
                                            "model.proj_dim=64", "model.pred_hidden=16"]))
    projector, predictor = EXPECTED[bn]
    assert [type(m).__name__ for m in model.projector] == projector
    assert [type(m).__name__ for m in model.predictor] == predictor
    if bn in ("default", "all"):
        assert model.projector[-1].affine is False  # sec. 3: the projector's output BN has no learnable affine


def test_a_linear_layer_followed_by_bn_has_no_bias_unless_asked():
    plain, biased = mlp([8, 16, 4]), mlp([8, 16, 4], bias_before_bn=True)
    assert plain[0].bias is None and biased[0].bias is not None and plain[-1].bias is not None


def test_scale_only_bn_keeps_its_shift_at_zero_through_training():
    head = mlp([8, 16, 4], bn_last=True, last_affine="scale")
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        head(torch.randn(32, 8)).pow(2).sum().backward()
        optimizer.step()
    assert torch.equal(head[-1].bias, torch.zeros(4)) and not torch.equal(head[-1].weight, torch.ones(4))


def test_an_unknown_affine_mode_is_refused():
    with pytest.raises(ValueError, match="last_affine"):
        mlp([4, 4], bn_last=True, last_affine="shift")


def test_the_heads_output_widths():
    assert mlp([2048, 512, 128])(torch.randn(4, 2048)).shape == (4, 128)
    assert isinstance(mlp([4, 4, 4], bn_hidden=False)[1], nn.ReLU)


@pytest.mark.parametrize("old_head_bias", [False, True])
def test_byol_checkpoints_with_or_without_the_former_head_bias_still_give_their_encoder(old_head_bias, tmp_path):
    """The converter reads only the encoder of our checkpoint.pth ("ours": model / encoder.), so a BYOL checkpoint
    written before the heads lost their last bias converts as one written after."""
    model = build_method(load_config(None, ["method=byol", "model.arch=resnet18", "model.proj_hidden=32",
                                            "model.proj_dim=16"]))
    state = model.state_dict()
    if old_head_bias:
        state = {**state, "projector.3.bias": torch.zeros(16), "predictor.3.bias": torch.zeros(16)}
    torch.save({"ssl_transfer": {"config": {"method": "byol"}}, "model": state}, tmp_path / "checkpoint.pth")
    weights = read_encoder(tmp_path / "checkpoint.pth")
    assert weights.source == "ours"
    encoder = model.encoder.state_dict()
    assert weights.state_dict.keys() == encoder.keys()
    assert all(torch.equal(weights.state_dict[k], v) for k, v in encoder.items())
