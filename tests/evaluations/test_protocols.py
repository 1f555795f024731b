"""Tables keep protocols apart: a column never mixes two protocols unless asked, each column names its protocol,
and a number selected on the split it is scored on says so."""
import json
import math

import pytest

import evaluations  # noqa: F401
from evaluations.results import parse_result
from evaluations.tables import make_tables
from sslt_core.errors import ResultsError
from tests.conftest import run_tool


def _record(evaluation, protocol, values, metric="top1", selected_on=None):
    trials = [{"seed": seed, "metrics": {metric: v}} for seed, v in enumerate(values)]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"evaluation": evaluation, "protocol": protocol, "metrics": {metric: mean}, "std": {metric: std},
            "trials": trials, "scored_on": "imagenet/val", "selected_on": selected_on}


def _result(name, **records):
    return {"name": name, "epochs": 100, "evaluations": records}


def test_a_column_of_two_protocols_is_refused_unless_asked(tmp_path):
    rows = [parse_result(_result("a", linear=_record("linear", "linear/moco-sgd-lr30-100ep", [70.0]))),
            parse_result(_result("b", linear=_record("linear", "linear/simsiam-larc-lr1.6-90ep", [71.0])))]
    with pytest.raises(ResultsError, match="linear/moco-sgd-lr30-100ep; linear/simsiam-larc-lr1.6-90ep"):
        make_tables(rows)
    text = make_tables(rows, mix_protocols=True)
    assert "Protocols: linear 100 ep: `linear/moco-sgd-lr30-100ep`, `linear/simsiam-larc-lr1.6-90ep`." in text
    paths = []
    for row in ("a", "b"):
        paths.append(tmp_path / f"{row}.json")
        paths[-1].write_text(json.dumps(parse_result(_result(row, linear=_record(
            "linear", f"linear/{row}", [70.0]))).to_dict()))
    refused = run_tool("tools/make_table.py", *paths)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "--mix-protocols" in refused.stderr
    assert run_tool("tools/make_table.py", *paths, "--mix-protocols").returncode == 0


def test_one_protocol_per_column_is_named_and_trials_show_mean_and_sample_std():
    values = [77.0, 77.5, 76.4]
    row = parse_result(_result("a", voc07=_record("voc07", "det/voc07-x", values, metric="bbox/AP50")))
    text = make_tables([row])
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)  # n - 1
    assert f"| a | {mean:.1f} ± {std:.1f} |" in text
    assert "Protocols: VOC 07 det AP50: `det/voc07-x`." in text  # the columns it has no value for: none
    tables = json.loads(make_tables([row], "json"))
    assert tables["protocols"]["transfer"] == {"VOC 07 det AP50": ["det/voc07-x"]}


def test_a_number_selected_on_its_test_split_says_so():
    row = parse_result(_result("a", knn=_record("knn", "knn/k20", [60.0], selected_on="imagenet/val")))
    assert "Selected on the test split (an optimistic number): knn." in make_tables([row])


@pytest.mark.parametrize("change, message", [
    (lambda r: r["evaluations"]["linear"].update(protocol=""), "protocol must be a non-empty string"),
    (lambda r: r["evaluations"]["linear"].update(trials=[]), "trials must be a non-empty list"),
    (lambda r: r["evaluations"]["linear"]["metrics"].update(top1=130.0), r"metrics.top1 must be in \[0, 100\]"),
    (lambda r: r["evaluations"]["linear"]["trials"][0].update(seed="0"), "seed must be an integer"),
    (lambda r: r["evaluations"].update(linaer=r["evaluations"]["linear"]), "did you mean 'linear'"),
    (lambda r: r["evaluations"]["linear"].update(evaluation="knn"), "holds a record of 'knn'"),
])
def test_a_damaged_record_fails_with_one_line_naming_the_key(change, message):
    data = _result("a", linear=_record("linear", "linear/p", [70.0]))
    change(data)
    with pytest.raises(ResultsError, match=message) as raised:
        parse_result(data)
    assert "\n" not in str(raised.value)
