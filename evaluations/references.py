"""Published reference numbers as data (configs/references/*.yaml), each with its citation, and the rule that
matches one to a measured record.

A reference is one published value: the toolkit evaluation and metric it corresponds to (`linear` top1,
`voc0712` bbox/AP50, ...), the paper's protocol id (configs/references/protocols.yaml: "linear/simsiam-paper",
"det/voc0712-moco-paper", ...), the method (pretrain/methods.py's names; "random" for training from scratch,
"supervised" for ImageNet-supervised weights), the pretraining epochs, batch size, value, published std (where
the source gives one) and its source (paper, table, setting).

The matching rule (find_reference), never by a model's name:
1. same evaluation and metric;
2. same method (a row without a method matches nothing; the random-init baseline, epochs 0, is "random");
3. same pretraining epochs (a row and a reference of unknown epochs, null, match each other);
4. the row's protocol id realises the reference's protocol: one of the protocol's `exact` patterns (a
   reproduction of the paper's protocol) or else one of its `family` patterns (a variant: compared, and said so);
5. several candidates left: the one published at the row's batch size; none or several at it: no match
   (ambiguous). A reference with a `variant` (e.g. SimSiam's "optimal" detection row) is data only: never matched.
"""
import fnmatch
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from sslt_core.config import read_yaml
from sslt_core.errors import ConfigError

REFERENCES_DIR = Path(__file__).resolve().parents[1] / "configs" / "references"
PROTOCOLS_FILE = "protocols.yaml"
EXACT, FAMILY = "exact", "family"


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    url: str
    table: str
    setting: str

    def text(self):
        return f"{self.citation}, {self.table} ({self.setting}); {self.url}"


@dataclass(frozen=True)
class PaperProtocol:
    id: str
    description: str
    exact: tuple = ()  # fnmatch patterns of toolkit protocol ids
    family: tuple = ()


@dataclass(frozen=True)
class Reference:
    evaluation: str
    metric: str
    protocol: str  # a key of protocols.yaml
    method: str
    epochs: int | None
    value: float
    source: Source
    std: float | None = None
    batch_size: int | None = None
    label: str = ""
    variant: str | None = None
    file: str = ""


def _text(value, where, optional=False):
    if optional and value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _number(value, where, optional=False, minimum=None):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            minimum is not None and value < minimum):
        low = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{where} must be a finite number{low}{' or null' if optional else ''}, got {value!r}")
    return float(value)


def _integer(value, where, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum} or null, got {value!r}")
    return value


def _mapping(value, where, keys=None):
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    unknown = sorted(set(value) - set(keys)) if keys is not None else []
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; the keys are {', '.join(keys)}")
    return value


def _patterns(value, where):
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where} must be a list of protocol id patterns (fnmatch), got {value!r}")
    return tuple(value)


def load_protocols(path):
    """{paper protocol id: PaperProtocol} from protocols.yaml."""
    data = _mapping(read_yaml(path), str(path), ("protocols",))
    protocols = {}
    for key, entry in _mapping(data.get("protocols") or {}, f"{path}: protocols").items():
        where = f"{path}: protocols.{key}"
        entry = _mapping(entry, where, ("description", "exact", "family"))
        protocols[key] = PaperProtocol(_text(key, where), _text(entry.get("description"), f"{where}.description"),
                                       _patterns(entry.get("exact"), f"{where}.exact"),
                                       _patterns(entry.get("family"), f"{where}.family"))
    return protocols


_ENTRY_KEYS = ("source", "evaluation", "protocol", "method", "label", "epochs", "batch_size", "variant", "metric",
               "value", "std", "metrics")


def _references_of(path, protocols):
    data = _mapping(read_yaml(path), str(path), ("sources", "anchors", "references"))
    sources = {}
    for key, entry in _mapping(data.get("sources") or {}, f"{path}: sources").items():
        where = f"{path}: sources.{key}"
        entry = _mapping(entry, where, ("citation", "url", "table", "setting"))
        sources[key] = Source(key, *(_text(entry.get(k), f"{where}.{k}") for k in ("citation", "url", "table",
                                                                                   "setting")))
    entries = data.get("references") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: references must be a list of entries, got {entries!r}")
    references = []
    for number, entry in enumerate(entries):
        where = f"{path}: references[{number}]"
        entry = _mapping(entry, where, _ENTRY_KEYS)
        source = _text(entry.get("source"), f"{where}.source")
        if source not in sources:
            raise ConfigError(f"{where}.source '{source}' is not under sources: of the file; add it there")
        protocol = _text(entry.get("protocol"), f"{where}.protocol")
        if protocol not in protocols:
            raise ConfigError(f"{where}.protocol '{protocol}' is not in {PROTOCOLS_FILE}; add it there with the "
                              "toolkit protocol ids that realise it")
        if ("metrics" in entry) == ("value" in entry):
            raise ConfigError(f"{where}: give either metric + value (+ std) or metrics: {{metric: value}}")
        if "metrics" in entry:
            values = _mapping(entry["metrics"], f"{where}.metrics")
            stds = _mapping(entry.get("std") or {}, f"{where}.std")
        else:
            metric = _text(entry.get("metric"), f"{where}.metric")
            values, stds = {metric: entry["value"]}, {metric: entry.get("std")}
        common = dict(evaluation=_text(entry.get("evaluation"), f"{where}.evaluation"), protocol=protocol,
                      method=_text(entry.get("method"), f"{where}.method"), source=sources[source],
                      epochs=_integer(entry.get("epochs"), f"{where}.epochs", 0),
                      batch_size=_integer(entry.get("batch_size"), f"{where}.batch_size", 1),
                      label=_text(entry.get("label", entry.get("method")), f"{where}.label"),
                      variant=_text(entry.get("variant"), f"{where}.variant", optional=True), file=Path(path).name)
        for metric, value in values.items():
            references.append(Reference(metric=_text(metric, f"{where}.metrics key"),
                                        value=_number(value, f"{where}.{metric}"),
                                        std=_number(stds.get(metric), f"{where}.std.{metric}", True, minimum=0),
                                        **common))
    return references


def load_references(folder=REFERENCES_DIR):
    """(references, {paper protocol id: PaperProtocol}) from every YAML file of `folder`; ConfigError naming the file
    and the entry on a bad value or on two references that the matching rule could not tell apart."""
    folder = Path(folder)
    if not (folder / PROTOCOLS_FILE).is_file():
        raise ConfigError(f"{folder} has no {PROTOCOLS_FILE}; give the folder of the reference numbers "
                          "(configs/references)")
    protocols = load_protocols(folder / PROTOCOLS_FILE)
    references, seen = [], {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == PROTOCOLS_FILE:
            continue
        for reference in _references_of(path, protocols):
            key = (reference.evaluation, reference.metric, reference.protocol, reference.method, reference.epochs,
                   reference.batch_size, reference.variant)
            if key in seen:
                raise ConfigError(f"{path}: two references of {reference.method} {reference.epochs} ep "
                                  f"{reference.evaluation} {reference.metric} under {reference.protocol} "
                                  f"({seen[key]} and {reference.label}); give one a variant")
            seen[key] = reference.label
            references.append(reference)
    return references, protocols


@functools.lru_cache(maxsize=4)
def shipped_references(folder=REFERENCES_DIR):
    """The references shipped with the toolkit, read once per process."""
    return load_references(folder)


def realised_protocols(protocol, protocols):
    """{paper protocol id: "exact" | "family"} that the toolkit protocol id `protocol` realises."""
    levels = {}
    for paper in protocols.values():
        if paper.id == protocol or any(fnmatch.fnmatchcase(protocol, p) for p in paper.exact):
            levels[paper.id] = EXACT
        elif any(fnmatch.fnmatchcase(protocol, p) for p in paper.family):
            levels[paper.id] = FAMILY
    return levels


def row_method(result):
    """The method a row is matched by: its own, "random" for the random-init baseline (epochs 0, no method)."""
    if result.method:
        return result.method
    return "random" if result.epochs == 0 else None


def find_reference(references, protocols, evaluation, metric, protocol, method, epochs, batch_size=None):
    """(Reference, "exact" | "family") published for a measured value, or (None, None); the rule of the module's
    docstring."""
    if method is None:
        return None, None
    levels = realised_protocols(protocol, protocols)
    candidates = [r for r in references if r.variant is None and r.evaluation == evaluation and r.metric == metric
                  and r.method == method and r.epochs == epochs and r.protocol in levels]
    if any(levels[r.protocol] == EXACT for r in candidates):
        candidates = [r for r in candidates if levels[r.protocol] == EXACT]
    if len(candidates) > 1:
        candidates = [r for r in candidates if batch_size is not None and r.batch_size == batch_size]
    if len(candidates) != 1:
        return None, None
    return candidates[0], levels[candidates[0].protocol]
