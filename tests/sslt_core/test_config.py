"""The typed config mechanism: values checked against their annotations, never coerced."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from sslt_core.config import Name, PositiveInt, Probability, build, read_yaml, replace_value
from sslt_core.errors import ConfigError


@dataclass
class Inner:
    k: list[PositiveInt] = field(default_factory=lambda: [20])
    p: Probability = 0.5


@dataclass
class Outer:
    required: str
    mode: Literal["a", "b"] = "a"
    count: int = 1
    rate: float = 0.1
    flag: bool = False
    maybe: PositiveInt | None = None
    inner: Inner = field(default_factory=Inner)
    named: dict[Name, str | Inner] = field(default_factory=dict)
    keyed: dict[Literal["x", "y"], int] = field(default_factory=dict)


@pytest.mark.parametrize("values, message", [
    ({}, "outer.required is required"),
    ({"required": "r", "mode": "c"}, "outer.mode must be one of a, b, got 'c'"),
    ({"required": "r", "count": 1.5}, "outer.count must be an integer, got 1.5"),
    ({"required": "r", "count": True}, "outer.count must be an integer, got True"),
    ({"required": "r", "count": "3"}, "outer.count must be an integer, got '3'"),
    ({"required": "r", "rate": "fast"}, "outer.rate must be a number, got 'fast'"),
    ({"required": "r", "rate": False}, "outer.rate must be a number, got False"),
    ({"required": "r", "flag": 1}, "outer.flag must be true or false, got 1"),
    ({"required": "r", "maybe": 0}, "outer.maybe must be >= 1, got 0"),
    ({"required": "r", "inner": {"k": [3, 0]}}, r"outer.inner.k\[1\] must be >= 1, got 0"),
    ({"required": "r", "inner": {"p": 1.5}}, "outer.inner.p must be <= 1, got 1.5"),
    ({"required": "r", "inner": {"pp": 1}}, "unknown config key outer.inner.pp; did you mean outer.inner.p"),
    ({"required": "r", "inner": [1]}, "'outer.inner' must be a mapping"),
    ({"required": "r", "named": {"..": "x"}}, "outer.named key must be a name of letters"),
    ({"required": "r", "named": {"a/b": "x"}}, "outer.named key must be a name"),
    ({"required": "r", "named": {".hidden": "x"}}, "outer.named key must be a name"),
    ({"required": "r", "keyed": {"z": 1}}, "outer.keyed key must be one of x, y, got 'z'"),
    ({"required": "r", "coutn": 1}, "unknown config key outer.coutn; did you mean outer.count"),
])
def test_a_wrong_value_fails_naming_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        build(Outer, values, "outer")


def test_good_values_are_kept_and_ints_widen_to_floats():
    built = build(Outer, {"required": "r", "rate": 1, "maybe": 3, "named": {"ok-1.x": "s", "b": {"p": 0}},
                          "keyed": {"x": 2}}, "outer")
    assert built.rate == 1.0 and isinstance(built.rate, float) and built.maybe == 3
    assert built.named == {"ok-1.x": "s", "b": Inner(p=0.0)} and built.keyed == {"x": 2}


def test_yaml_1_1_exponent_without_a_dot_is_a_float():
    assert build(Outer, {"required": "r", "rate": "1e-6"}, "outer").rate == 1e-6


def test_overrides_replace_nested_values_with_the_same_checks():
    built = build(Outer, {"required": "r"}, "outer")
    assert replace_value(built, "inner.p", 0.25, "outer").inner.p == 0.25
    with pytest.raises(ConfigError, match="outer.inner.p must be <= 1"):
        replace_value(built, "inner.p", 2, "outer")
    with pytest.raises(ConfigError, match="outer.count has no sub-keys"):
        replace_value(built, "count.x", 2, "outer")


def test_yaml_files_fail_with_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        read_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_yaml(tmp_path / "list.yaml")
    assert read_yaml(_empty(tmp_path)) == {}


def _empty(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    return tmp_path / "empty.yaml"


def test_a_key_given_twice_is_refused_and_yaml_merge_keys_still_work(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 1\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="key 'epochs' appears twice"):
        read_yaml(twice)
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {lr: 0.1, epochs: 1}\nrun:\n  <<: *b\n  epochs: 2\n")
    assert read_yaml(merged)["run"] == {"lr": 0.1, "epochs": 2}  # as yaml.safe_load reads it
