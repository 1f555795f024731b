"""Every ImageNet preset (configs/pretrain/<method>_r50.yaml) equals the official recipe, item by item.

The official values are written out here from the papers and the official code, not read from the presets:
- SimCLR: Chen et al. 2020 (sec. 4, B.1), TF v1 run.py (LARS, lr 0.3 x B/256, warm-up 10 epochs, wd 1e-6),
  lars_optimizer.py (momentum buffer of lr x update, TF's form) and model_util.py (2048-BN-ReLU-128-BN(center=False)
  head; `init_zero` last BN of each residual block).
- MoCo v2: main_moco.py --mlp --aug-plus --cos (lr 0.03 at 256, wd 1e-4, 200 epochs, K 65536, m 0.999, T 0.2,
  cosine per epoch in adjust_learning_rate) and the single-GPU notebook's SplitBatchNorm (8 splits).
- BYOL: Grill et al. 2020, appendix C, 300-epoch setting (LARS lr 0.3 x B/256, wd 1e-6, tau_base 0.99,
  4096-256 heads, batch 4096, 10 warm-up epochs); haiku `scale_init=zeros` last BN.
- SwAV: scripts/swav_800ep_pretrain.sh with main_swav.py (batch 64 x 64 GPUs, LARC around SGD, base_lr 4.8,
  final_lr 0.0048, start_warmup 0.3, warmup 10 epochs, wd 1e-6, 3000 prototypes, T 0.1, eps 0.05, 3 Sinkhorn
  iterations, 2x224 + 6x96 crops at scales (0.14, 1) and (0.05, 0.14), --queue_length 0 (epoch_queue_starts 15 is
  main_swav's default), freeze_prototypes_niters 313, --sync_bn apex: groups of 8 GPUs).
- SimSiam: main_simsiam.py and Chen & He 2021 sec. 3 / A (batch 512, lr 0.05 x B/256, wd 1e-4, 100 epochs,
  cosine per epoch, no warm-up, predictor 2048-512-2048 with a fixed lr, zero-init residual).
"""
import pytest
import torch

from pretrain.config import load_config
from pretrain.methods import METHODS, build_method
from tests.conftest import REPO

OFFICIAL = {
    "simclr": {
        "train": dict(image_size=224, epochs=100, batch_size=4096, optimizer="lars", base_lr=0.3, lr_rule="linear",
                      weight_decay=1e-6, momentum=0.9, lr_in_momentum=True, warmup_epochs=10, warmup_start_lr=0.0,
                      final_lr=0.0, lr_schedule_unit="step", sync_bn=True, sync_bn_group_size=0),
        "model": dict(arch="resnet50", proj_hidden=2048, proj_dim=128, temperature=0.1),
    },
    "mocov2": {
        "train": dict(image_size=224, epochs=200, batch_size=256, optimizer="sgd", base_lr=0.03, lr_rule="linear",
                      weight_decay=1e-4, momentum=0.9, lr_in_momentum=False, warmup_epochs=0, final_lr=0.0,
                      lr_schedule_unit="epoch", sync_bn=False),
        "model": dict(arch="resnet50", proj_hidden=2048, proj_dim=128, queue_size=65536, momentum=0.999,
                      temperature=0.2, bn_splits=8),
    },
    "byol": {
        "train": dict(image_size=224, epochs=300, batch_size=4096, optimizer="lars", base_lr=0.3, lr_rule="linear",
                      weight_decay=1e-6, momentum=0.9, lr_in_momentum=False, warmup_epochs=10, warmup_start_lr=0.0,
                      final_lr=0.0, lr_schedule_unit="step", sync_bn=True, sync_bn_group_size=0),
        "model": dict(arch="resnet50", proj_hidden=4096, proj_dim=256, tau_base=0.99),
    },
    "swav": {
        "train": dict(image_size=224, epochs=800, batch_size=4096, optimizer="larc", base_lr=4.8, lr_rule="none",
                      final_lr=0.0048, weight_decay=1e-6, momentum=0.9, lr_in_momentum=False, warmup_epochs=10,
                      warmup_start_lr=0.3, lr_schedule_unit="step", sync_bn=True, sync_bn_group_size=8),
        "model": dict(arch="resnet50", proj_hidden=2048, proj_dim=128, prototypes=3000, temperature=0.1, epsilon=0.05,
                      sinkhorn_iterations=3, small_crops=6, queue_length=0, queue_start_epoch=15,
                      freeze_prototypes_steps=313),
    },
    "simsiam": {
        "train": dict(image_size=224, epochs=100, batch_size=512, optimizer="sgd", base_lr=0.05, lr_rule="linear",
                      weight_decay=1e-4, momentum=0.9, lr_in_momentum=False, warmup_epochs=0, final_lr=0.0,
                      lr_schedule_unit="epoch", sync_bn=True, sync_bn_group_size=0),
        "model": dict(arch="resnet50", proj_dim=2048, pred_hidden=512, predictor="mlp_fixed_lr", stop_gradient=True,
                      bn="default", similarity="cosine", loss="symmetric", target="online"),
    },
}

# Per view: (crop size / 224, crop scale, jitter (b, c, s, h), jitter p, grayscale p, blur p, solarize p)
OFFICIAL_VIEWS = {
    "simclr": [(1, (0.08, 1), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, 0.0)] * 2,
    "mocov2": [(1, (0.2, 1), (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5, 0.0)] * 2,
    "byol": [(1, (0.08, 1), (0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 1.0, 0.0),
             (1, (0.08, 1), (0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 0.1, 0.2)],
    "swav": [(1, (0.14, 1), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, 0.0)] * 2
    + [(96 / 224, (0.05, 0.14), (0.8, 0.8, 0.8, 0.2), 0.8, 0.2, 0.5, 0.0)] * 6,
    "simsiam": [(1, (0.2, 1), (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5, 0.0)] * 2,
}

# The last BN of every residual block starts at zero: SimCLR (init_zero), BYOL (scale_init=zeros), SimSiam
# (zero_init_residual=True); MoCo and SwAV use torchvision's / their own default (ones).
ZERO_INIT_RESIDUAL = {"simclr": True, "byol": True, "simsiam": True, "mocov2": False, "swav": False}


def preset(method):
    return load_config(REPO / "configs" / "pretrain" / f"{method}_r50.yaml")


def test_every_method_has_an_official_table():
    assert set(OFFICIAL) == set(METHODS) == set(OFFICIAL_VIEWS) == set(ZERO_INIT_RESIDUAL)


@pytest.mark.parametrize("method", sorted(OFFICIAL))
@pytest.mark.parametrize("section", ["train", "model"])
def test_preset_equals_the_official_recipe(method, section):
    run = preset(method)
    assert run.method == method
    found = {key: getattr(getattr(run, section), key) for key in OFFICIAL[method][section]}
    assert found == OFFICIAL[method][section]


@pytest.mark.parametrize("method", sorted(OFFICIAL))
def test_views_equal_the_official_augmentations(method):
    run = preset(method)
    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet18"]))
    views = [(r.size_fraction, r.scale, r.jitter, r.jitter_p, r.grayscale_p, r.blur_p, r.solarize_p)
             for r in model.view_recipes]
    if method == "swav":
        assert run.model.small_crops == 6
    assert views == OFFICIAL_VIEWS[method]


@pytest.mark.parametrize("method", sorted(OFFICIAL))
def test_last_bn_of_each_residual_block_starts_as_the_official_code_does(method):
    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet50"]))
    last_bns = [block.bn3.weight for layer in (model.encoder.layer1, model.encoder.layer2, model.encoder.layer3,
                                               model.encoder.layer4) for block in layer]
    assert len(last_bns) == 16
    expected = torch.zeros_like if ZERO_INIT_RESIDUAL[method] else torch.ones_like
    assert all(torch.equal(w, expected(w)) for w in last_bns)


def test_simclr_projector_ends_in_a_bn_with_a_scale_and_no_shift():
    """TF v1 model_util.linear_layer(..., use_bias=False, use_bn=True) -> batch_norm_relu(center=False)."""
    model = build_method(load_config(None, ["method=simclr", "model.arch=resnet18"]))
    last = model.projector[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and last.num_features == 128
    assert not last.bias.requires_grad and torch.equal(last.bias, torch.zeros(128)) and last.weight.requires_grad
    trained = {id(p) for group in model.param_groups() for p in group["params"]}
    assert id(last.bias) not in trained and id(last.weight) in trained


# Does the Linear layer before each BN of the heads hold a bias? main_swav's and BYOL's haiku heads: yes;
# SimCLR's (use_bias and not use_bn) and SimSiam's builder.py (bias=False): no.
BIAS_BEFORE_BN = {"swav": True, "byol": True, "simclr": False, "simsiam": False}


@pytest.mark.parametrize("method", sorted(BIAS_BEFORE_BN))
def test_linear_layers_before_a_bn_have_a_bias_as_in_the_official_code(method):
    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet18"]))
    heads = [model.projector] + ([model.predictor] if method in ("byol", "simsiam") else [])
    pairs = [(a, b) for head in heads for a, b in zip(head, list(head)[1:]) if isinstance(b, torch.nn.BatchNorm1d)]
    assert pairs and all(isinstance(a, torch.nn.Linear) for a, _ in pairs)
    assert all((a.bias is not None) == BIAS_BEFORE_BN[method] for a, _ in pairs)


# Does the last Linear of a head (no BN after it) hold a bias? BYOL's haiku MLP (byol/utils/networks.py):
# hk.Linear(output_size, with_bias=False); main_swav's projection head, MoCo v2's fc (main_moco.py --mlp) and
# SimSiam's predictor output (builder.py nn.Linear(pred_dim, dim)): yes.
LAST_LINEAR_BIAS = {("byol", "projector"): False, ("byol", "predictor"): False, ("swav", "projector"): True,
                    ("mocov2", "projector"): True, ("simsiam", "predictor"): True}


@pytest.mark.parametrize("method, head", sorted(LAST_LINEAR_BIAS))
def test_the_last_linear_layer_of_a_head_has_a_bias_as_in_the_official_code(method, head):
    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet18"]))
    last = getattr(model, head)[-1]
    assert isinstance(last, torch.nn.Linear)
    assert (last.bias is not None) == LAST_LINEAR_BIAS[method, head]


# The blur's kernel: SimCLR's data_util.gaussian_blur (kernel_size = height // 10) and BYOL's augmentations.py
# (image_size / blur_divider 10) cut the Gaussian there ("tenth"); MoCo v2 and SimSiam (loader.py GaussianBlur) and
# main_swav blur with PIL's ImageFilter.GaussianBlur(radius=sigma), which does not ("pil").
BLUR_KERNEL = {"simclr": "tenth", "byol": "tenth", "mocov2": "pil", "simsiam": "pil", "swav": "pil"}


@pytest.mark.parametrize("method", sorted(BLUR_KERNEL))
def test_the_blur_kernel_is_sized_as_the_official_blur(method):
    model = build_method(load_config(None, [f"method={method}", "model.arch=resnet18"]))
    assert {r.blur_kernel for r in model.view_recipes} == {BLUR_KERNEL[method]}


# The official batch-256 SwAV recipe, scripts/swav_200ep_bs256_pretrain.sh: --epochs 200 --batch_size 64 on 4 GPUs,
# --base_lr 0.6 --final_lr 0.0006 --warmup_epochs 0 --queue_length 3840 --epoch_queue_starts 15
# --freeze_prototypes_niters 5005 --epsilon 0.05 --wd 0.000001 --sync_bn pytorch (all GPUs), the rest as the
# batch-4096 script; main_swav's schedule takes the lrs as they are (no rule).
SWAV_BS256 = {
    "train": dict(image_size=224, epochs=200, batch_size=256, optimizer="larc", base_lr=0.6, lr_rule="none",
                  final_lr=0.0006, weight_decay=1e-6, momentum=0.9, lr_in_momentum=False, warmup_epochs=0,
                  lr_schedule_unit="step", sync_bn=True, sync_bn_group_size=0),
    "model": dict(arch="resnet50", proj_hidden=2048, proj_dim=128, prototypes=3000, temperature=0.1, epsilon=0.05,
                  sinkhorn_iterations=3, small_crops=6, queue_length=3840, queue_start_epoch=15,
                  freeze_prototypes_steps=5005),
}


@pytest.mark.parametrize("section", ["train", "model"])
def test_the_swav_batch_256_preset_equals_the_official_script(section):
    run = load_config(REPO / "configs" / "pretrain" / "swav_r50_bs256.yaml")
    assert run.method == "swav" and run.warnings == ()
    found = {key: getattr(getattr(run, section), key) for key in SWAV_BS256[section]}
    assert found == SWAV_BS256[section]


def test_a_preset_at_another_batch_size_with_no_lr_rule_warns():
    path = REPO / "configs" / "pretrain" / "swav_r50.yaml"
    assert load_config(path).warnings == ()
    (warning,) = load_config(path, ["train.batch_size=256"]).warnings
    assert "made for batch 4096" in warning and "batch 256" in warning and "swav_r50_bs256.yaml" in warning
    assert load_config(path, ["train.batch_size=256", "train.lr_rule=linear"]).warnings == ()  # rescaled: no trap
    assert load_config(REPO / "configs" / "pretrain" / "simsiam_r50.yaml", ["train.batch_size=256"]).warnings == ()
