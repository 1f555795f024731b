"""Typed configs: dataclasses hold the defaults and the types, YAML files hold what differs, `key=value`
overrides come from the command line. The one mechanism for pretraining and the pipeline.

Values are checked, never coerced: an int field takes an int (not 1.5, not true), a float field an int or a
float, a bool field true or false, a `Literal[...]` field one of its choices, an `Annotated[..., Range(...)]`
field a value in its range. An unknown key fails with the closest valid one. The only conversion is YAML 1.1's:
`1e-6` (no dot) is read by YAML as a string and is accepted where a float is expected.
"""
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml

from sslt_core.errors import ConfigError

_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # 1e-6: what YAML 1.1 leaves a string


@dataclass(frozen=True)
class Range:
    """Bounds of a number: min / max inclusive, gt exclusive."""

    min: float = None
    max: float = None
    gt: float = None

    def check(self, value, where):
        if self.min is not None and value < self.min:
            raise ConfigError(f"{where} must be >= {self.min}, got {value!r}")
        if self.gt is not None and value <= self.gt:
            raise ConfigError(f"{where} must be > {self.gt}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{where} must be <= {self.max}, got {value!r}")


@dataclass(frozen=True)
class Pattern:
    """A string that must match a regular expression; `meaning` says in words what is allowed."""

    regex: str
    meaning: str

    def check(self, value, where):
        if not re.fullmatch(self.regex, value):
            raise ConfigError(f"{where} must be {self.meaning}, got {value!r}")


PositiveInt = Annotated[int, Range(min=1)]
NonNegativeInt = Annotated[int, Range(min=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(min=0)]
Probability = Annotated[float, Range(min=0, max=1)]
CropSize = Annotated[int, Range(min=32, max=1024)]  # an evaluation crop in pixels: 32 (CIFAR) to 1024
# A name that becomes a folder: letters, digits, '_', '-', '.', not starting with '.', so never '..' or a path.
Name = Annotated[str, Pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", "a name of letters, digits, '_', '-' and '.' that "
                                                              "does not start with '.' (it becomes a folder)")]


def _kind(hint):
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_value(value, hint, where):
    """`value` (from YAML) checked against the type hint `hint`; returns it (ints widened to float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        value = check_value(value, args[0], where)
        for rule in hint.__metadata__:
            rule.check(value, where)
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return check_value(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        sections = [e for o, e in zip(options, errors) if dataclasses.is_dataclass(o)]
        if isinstance(value, dict) and len(sections) == 1:  # a mapping given for a section: that section's error
            raise ConfigError(sections[0])
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where} must be one of the types "
                          f"{', '.join(_kind(o) for o in options)}, got {value!r}")
    if hint is typing.Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if type(value) is not int:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-6 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else typing.Any
        items = [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        key_hint, value_hint = args if args else (typing.Any, typing.Any)
        return {check_value(k, key_hint, f"{where} key"): check_value(v, value_hint, f"{where}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return build(hint, value, where)
    raise TypeError(f"config type {hint!r} of {where} is not supported")  # a programming error, not bad input


def fields_of(cls):
    """{name: (field, resolved type hint)} of a config dataclass."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def unknown_key(key, valid, where):
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    hint = f"did you mean {where}.{close[0]}? " if close else ""
    return ConfigError(f"unknown config key {where}.{key}; {hint}valid: {', '.join(valid)}")


def build(cls, values, where):
    """An instance of the config dataclass `cls` from a mapping, every value checked."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys to values, got {values!r}")
    fields = fields_of(cls)
    for key in values:
        if key not in fields:
            raise unknown_key(key, fields, where)
    kwargs = {}
    for name, (field, hint) in fields.items():
        if name in values:
            kwargs[name] = check_value(values[name], hint, f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name} is required; add it to the config")
    return cls(**kwargs)


def replace_value(instance, dotted_key, value, where):
    """A copy of `instance` with the (nested) field `dotted_key` set to the checked `value`."""
    name, _, rest = dotted_key.partition(".")
    fields = fields_of(type(instance))
    if name not in fields:
        raise unknown_key(name, fields, where)
    hint = fields[name][1]
    if rest:
        current = getattr(instance, name)
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{where}.{name} has no sub-keys; write {where}.{name}=VALUE")
        value = replace_value(current, rest, value, f"{where}.{name}")
    else:
        value = check_value(value, hint, f"{where}.{name}")
    return dataclasses.replace(instance, **{name: value})


def parse_override(item):
    """'section.key=value' -> ('section.key', value read as YAML)."""
    if "=" not in item or not item.split("=", 1)[0]:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.epochs=2")
    key, text = item.split("=", 1)
    try:
        return key, safe_load_bounded(text) if text else text
    except yaml.YAMLError as error:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"override {key}=...: the value nests thousands of levels deep; give a number, a word "
                          "or a short list") from None


MAX_YAML_VALUES = 5_000  # values of a document, aliases expanded: configs here hold < 120, a full detectron2 one ~500


def _expanded_size(node, sizes, open_nodes):
    """How many values `node` stands for once every alias in it is expanded (shared nodes counted each time)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:  # an alias to an enclosing node: it expands forever
        return math.inf
    open_nodes.add(id(node))
    children = node.value if isinstance(node, yaml.SequenceNode) else [
        n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_VALUES:
            break
    open_nodes.discard(id(node))
    sizes[id(node)] = total
    return total


class _BoundedLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a document whose aliases expand past MAX_YAML_VALUES values: a 1 KB
    'billion laughs' (anchors of anchors) would otherwise take minutes and gigabytes to read and check."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}, set()) > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"its aliases (*name) expand to more than {MAX_YAML_VALUES} values (an alias bomb?); "
                                 "write the values out")
        return node


def safe_load_bounded(text):
    """yaml.safe_load with aliases expanded to at most MAX_YAML_VALUES values."""
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)


class _UniqueKeyLoader(_BoundedLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping (YAML would keep the last silently), and
    alias bombs."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: a merged key may be overridden, as YAML allows
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def safe_load_unique(text):
    """yaml.safe_load that refuses duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path):
    """The mapping in YAML file `path`, with one-line errors for a missing file, a folder or bad YAML."""
    return read_yaml_text(path)[1]


def read_yaml_text(path):
    """(text, mapping) of YAML file `path`, the file read once (for a caller that also keeps or hashes its text:
    text.encode() is the file's bytes); the errors of read_yaml."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder; give the path of a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path")
    try:
        text = path.read_bytes().decode("utf-8")
        data = safe_load_unique(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config {path} is not valid YAML{where} ({getattr(error, 'problem', None) or error}); "
                          "fix the file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config {path} cannot be read ({error}); give a UTF-8 YAML file") from None
    except RecursionError:
        raise ConfigError(f"config {path} nests thousands of levels deep; a config is a few levels of keys") from None
    if data is None:
        return text, {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of keys to values, got a {type(data).__name__}")
    return text, data


def to_dict(instance):
    """A config dataclass as plain data (for config.yaml next to every output)."""
    return dataclasses.asdict(instance)
