"""Pretraining configs: presets load, and every wrong key, type, choice or range fails with one line."""
import pytest

from pretrain.config import load_config
from pretrain.methods import METHODS
from pretrain.train import train
from sslt_core.errors import ConfigError
from tests.conftest import REPO


@pytest.mark.parametrize("overrides, message", [
    (["model.stop_gradiant=false"], "unknown config key model.stop_gradiant; did you mean model.stop_gradient"),
    (["train.epoch=3"], "did you mean train.epochs"),
    (["train.epochs=many"], "train.epochs must be an integer, got 'many'"),
    (["train.epochs=1.5"], "train.epochs must be an integer, got 1.5"),
    (["train.epochs=true"], "train.epochs must be an integer, got True"),
    (["train.epochs=0"], "train.epochs must be >= 1"),
    (["train.image_size=0"], "train.image_size must be >= 32"),
    (["train.batch_size=-4"], "train.batch_size must be >= 1"),
    (["train.base_lr=0"], "train.base_lr must be > 0"),
    (["train.precision=bf61"], "train.precision must be one of auto, fp32, bf16, got 'bf61'"),
    (["train.optimizer=adam"], "train.optimizer must be one of sgd, lars, larc"),
    (["train.lr_schedule_unit=epochs"], "train.lr_schedule_unit must be one of step, epoch"),
    (["train.sync_bn=1"], "train.sync_bn must be true or false, got 1"),
    (["train.warmup_epochs=200"], "train.warmup_epochs 200.0 is longer than train.epochs"),
    (["train.lr_in_momentum=true"], "train.lr_in_momentum is for train.optimizer lars or larc"),
    (["model.predictor=linear"], "model.predictor must be one of mlp, mlp_fixed_lr, none, fixed_random"),
    (["model.target_momentum=1.5"], "model.target_momentum must be <= 1"),
    (["model.arch=vit"], "model.arch must be one of resnet50, resnet18"),
    (["epochs=3"], "the key must be train.<key> or model.<key>"),
    (["train.epochs"], "must look like section.key=value"),
    (["train.epochs=[1"], "not valid YAML"),
    (["method=dino"], "unknown method 'dino'"),
])
def test_a_bad_value_fails_with_one_line_naming_it(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")) as raised:
        load_config(REPO / "configs" / "pretrain" / "simsiam_demo.yaml", overrides)
    assert "\n" not in str(raised.value)


def test_yaml_1_1_scientific_notation_without_a_dot_is_read_as_the_number():
    assert load_config(None, ["method=simsiam", "train.weight_decay=1e-6"]).train.weight_decay == 1e-6


def test_an_int_is_accepted_where_a_float_is_expected():
    assert load_config(None, ["method=simsiam", "train.base_lr=1"]).train.base_lr == 1.0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_preset_loads(method):
    for kind in ("r50", "demo"):
        assert load_config(REPO / "configs" / "pretrain" / f"{method}_{kind}.yaml").method == method


@pytest.mark.parametrize("text, message", [("train: [1, 2]\nmethod: simsiam\n", "'train' must be a mapping"),
                                           ("method: simsiam\ntrain:\n  epochs: 1\n epochs: 2\n", "not valid YAML"),
                                           ("- 1\n", "must hold a mapping"),
                                           ("method: simsiam\nextra: 1\n", "unknown config key \\(top level\\).extra")])
def test_a_broken_config_file_fails_with_one_line(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_missing_config_or_a_folder_fails_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_the_batch_warning_is_written_once_to_the_runs_log(demo_root, tmp_path):
    preset = tmp_path / "made_for_32.yaml"
    preset.write_text("method: simsiam\ntrain: {batch_size: 32, lr_rule: none, base_lr: 0.05}\n")
    run = load_config(preset, [f"train.data={demo_root}", "model.arch=resnet18", "train.image_size=32",
                               "train.batch_size=16", "train.workers=0", "train.max_steps=1"])
    train(run, tmp_path / "out", progress=False)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert log.count("is made for batch 32; this run has batch 16 with train.lr_rule none") == 1, log
