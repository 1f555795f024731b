"""Hostile files and folders (issue 26): links planted where a run writes, YAML alias bombs, pickles that ask for
terabytes, damaged feature caches, damaged resume state, job records, table names that would break the markup, and
output names at the file system's limit. One case a row, as tests/tools/test_bad_inputs.py: one line `error: ...`,
a non-zero exit, no payload ran, and nothing outside the output folder changed (a link's target keeps its bytes)."""
import hashlib
import json
import pickle
import re
import shutil
import time
import zipfile

import pytest
import torch

from tests.sslt_core.layouts import random_resnet
from tests.tools import test_bad_inputs
from tests.tools.test_bad_inputs import DEMO_VOC, det, pretrain

files = test_bad_inputs.files  # its hostile files and the demo data, as a fixture of this module too


class Alloc:
    """Unpickles as bytearray(2**45): 32 TiB of zeros from an allow-listed type."""

    def __reduce__(self):
        return bytearray, (2 ** 45,)


def alias_bomb(path, levels, head=""):
    """A YAML file of ~300 bytes whose aliases expand to 10**levels values ('billion laughs')."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    path.write_text(head + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombs")
    f = {f"bomb{n}.yaml": alias_bomb(d / f"bomb{n}.yaml", n) for n in (4, 5, 6)}
    f["detbomb.yaml"] = alias_bomb(d / "detbomb.yaml", 6, head=f"_BASE_: {DEMO_VOC}\n")
    checkpoint = {"state_dict": random_resnet(), "extra": Alloc()}
    torch.save({"a": 1}, d / "plain.pth")  # the zip layout of torch.save; its data.pkl replaced below
    with zipfile.ZipFile(d / "plain.pth") as source, zipfile.ZipFile(d / "alloc.pth", "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, pickle.dumps(checkpoint["extra"], protocol=2) if name.endswith("data.pkl") else data)
    (d / "alloc.pkl").write_bytes(pickle.dumps({"model": {"x": Alloc()}, "__author__": "x"}))
    f["alloc.pth"], f["alloc.pkl"] = d / "alloc.pth", d / "alloc.pkl"
    (d / "deep.yaml").write_text("train:\n  epochs: " + "[" * 20000 + "]" * 20000 + "\n")
    (d / "deepdet.yaml").write_text(f"_BASE_: {DEMO_VOC}\nSOLVER:\n  STEPS: " + "[" * 20000 + "]" * 20000 + "\n")
    f["deep.yaml"], f["deepdet.yaml"] = d / "deep.yaml", d / "deepdet.yaml"
    return f


def _pipeline_bomb(out, data):
    path = alias_bomb(out / "pipeline.yaml", 6, head=f"data_root: {data}\n")
    return ["run_pipeline", "--config", str(path), "--output-dir", str(out / "p")]


# Links planted where a run writes: (folder under {out}, link name, target: "victim" (a user's file outside),
# "victim_dir", or "dangling" (a path outside that does not exist)).
PLANTED = {
    "pretrain/lock-link-to-a-users-file": (pretrain(), "pre", ".lock", "victim"),  # N47
    "pretrain/log-link": (pretrain(), "pre", "log.txt", "victim"),  # N48
    "pretrain/metrics-dangling-link": (pretrain(), "pre", "metrics.jsonl", "dangling"),  # N49
    "pretrain/metrics-link": (pretrain(), "pre", "metrics.jsonl", "victim"),
    "pretrain/tensorboard-link": (pretrain(), "pre", "tensorboard", "victim_dir"),
    "pretrain/encoder-link": (pretrain(), "pre", "encoder.safetensors", "victim"),  # refused before any work
    "det/log-link": (det(), "det", "log.txt", "victim"),
    "det/trial-metrics-link": (det(), "det/trial_0", "metrics.json", "victim"),
    "det/trial-last-checkpoint-dangling": (det(), "det/trial_0", "last_checkpoint", "dangling"),
    "demo/lock-link": (["make_demo_data", "--out", "{out}/d", "--size", "small"], "", ".d.lock", "victim"),
    "knn/output-link": (["eval_knn", "--weights", "random", "--data", "{data}", "--image-size", "32", "--arch",
                         "resnet18", "--cache-dir", "{out}/cache", "--workers", "0", "--output", "{out}/r/r.json"],
                        "r", "r.json", "victim"),
}


def _fill(args, files, out):
    return [a.replace("{data}", str(files["data"])).replace("{out}", str(out)) for a in args]


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _one_line_error(code, stderr, expected):
    lines = stderr.strip().splitlines()
    assert code != 0 and lines and lines[-1].startswith("error: "), stderr[-2000:]
    assert re.search(expected, lines[-1]), lines[-1]
    assert "Traceback" not in stderr, stderr[-2000:]


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_link_planted_where_a_run_writes_is_refused_and_its_target_kept(case, files, tool, tmp_path):
    command, folder, name, target = PLANTED[case]
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / folder).mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_bytes(b"the user's thesis\n")
    (outside / "victim_dir").mkdir()
    link_target = outside / ("missing" if target == "dangling" else target)
    (out / folder / name).symlink_to(link_target)
    before = _digest(outside)
    code, _, stderr = tool(*_fill(command, files, out))
    _one_line_error(code, stderr, rf"{re.escape(name)} exists and is not a (regular file|folder)")
    assert _digest(outside) == before  # not truncated, not appended to
    assert sorted(p.name for p in outside.iterdir()) == ["victim", "victim_dir"]  # nothing created outside
    assert not any((outside / "victim_dir").iterdir())
    assert not files["marker"].exists()


OVERRIDE_BOMB = ("train.epochs=[&a [1,1,1,1,1,1,1,1,1,1], &b [" + ",".join(["*a"] * 10) + "], &c [" +
                 ",".join(["*b"] * 10) + "], [" + ",".join(["*c"] * 10) + "]]")  # 10**4 values
# (tool and arguments, what the one line must say)
CASES = {
    "pretrain/alias-bomb-1e4": (pretrain(config="{bomb4.yaml}"), "expand to more than"),  # N59
    "pretrain/alias-bomb-1e5": (pretrain(config="{bomb5.yaml}"), "expand to more than"),  # N60
    "pretrain/alias-bomb-1e6": (pretrain(config="{bomb6.yaml}"), "expand to more than"),  # N80
    "pretrain/alias-bomb-in-an-override": (pretrain(OVERRIDE_BOMB), "expand to more than"),
    "det/alias-bomb": (det(config="{detbomb.yaml}"), "expand to more than"),
    "convert/bytearray-2-45-pth": (["convert_to_d2", "{alloc.pth}", "-o", "{out}/x.pkl"],  # N08
                                   "asks for 35184372088832 bytes"),
    "det/bytearray-2-45-pkl": (det(weights="{alloc.pkl}"), "asks for 35184372088832 bytes"),
    # found by the fresh-clone probe: nesting thousands deep (D1), a huge value echoed (D16), a huge direct array
    "pretrain/yaml-nested-20000-deep": (pretrain(config="{deep.yaml}"), "nests thousands of levels deep"),
    "pretrain/override-nested-20000-deep": (pretrain("train.epochs=" + "[" * 20000 + "]" * 20000),
                                            "nests thousands of levels deep"),
    "det/yaml-nested-20000-deep": (det(config="{deepdet.yaml}"), "nests thousands of levels deep"),
    "det/steps-a-40-kb-value": (det("SOLVER.STEPS", "[" + ",".join(["1"] * 20000) + "]"), r"\.\.\. \(cut\)$"),
    "convert/output-name-over-255-bytes": (["convert_to_d2", "{moco.pth}", "-o", "{out}/" + "a" * 252 + ".pkl"],
                                           "is 256 bytes long; file systems allow at most 255"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_file_gives_one_line_quickly_and_no_output(case, files, bombs, tool, tmp_path):
    command, expected = CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    paths = {**{k: v for k, v in files.items() if k != "data"}, **bombs}
    command = [re.sub(r"\{([^{}]+)\}", lambda m: str(paths[m.group(1)]) if m.group(1) in paths else m.group(0), a)
               for a in command]
    start = time.monotonic()
    code, stdout, stderr = tool(*_fill(command, files, out))
    _one_line_error(code, stderr, expected)
    assert time.monotonic() - start < 60  # the 1e6 bomb took 240 s and 4.9 GB before
    assert "detected:" not in stdout  # a name that cannot be written is refused before any conversion
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert not files["marker"].exists()


def test_the_pipeline_refuses_an_alias_bomb(files, tool, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, _, stderr = tool(*_pipeline_bomb(out, files["data"]))
    _one_line_error(code, stderr, "expand to more than")
    assert not (out / "p").exists()


def test_a_240_character_output_name_converts(files, tool, tmp_path):
    """N17 / issue 28: a legal name (240 characters + .pkl) works; the temporary name is cut to fit NAME_MAX."""
    output = tmp_path / ("b" * 240 + ".pkl")
    code, stdout, stderr = tool("convert_to_d2", files["moco.pth"], "-o", output)
    assert code == 0, stderr[-2000:]
    assert output.is_file() and pickle.loads(output.read_bytes())["model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]  # no temporary file left


# --- damaged feature caches (eval/features.py): recomputed, said in the log, the score that of a fresh run --------

KNN = ["eval_knn", "--weights", "random", "--data", "{data}", "--image-size", "32", "--arch", "resnet18", "--workers",
       "0", "--k", "5", "--backend", "torch"]


@pytest.fixture(scope="module")
def knn_reference(files, tmp_path_factory):
    """A kNN result computed with a fresh cache, and that cache."""
    from sslt_core.cli import run
    from tests.conftest import _tool_module

    d = tmp_path_factory.mktemp("knn")
    with pytest.raises(SystemExit) as done:
        run(_tool_module("eval_knn").main, _fill(KNN[1:] + ["--cache-dir", str(d / "cache"), "--output",
                                                            str(d / "r.json")], files, d))
    assert done.value.code in (0, None)
    return json.loads((d / "r.json").read_text()), d / "cache"


def _train_cache(cache):
    return next(cache.glob("train-*.npz"))


def _damage_object_array(cache):  # N37
    import numpy as np
    path = _train_cache(cache)
    with np.load(path) as data:
        labels = data["labels"]
    np.savez(path, features=np.array([object()] * len(labels), dtype=object), labels=labels)


def _damage_truncate(cache):  # N38
    path = _train_cache(cache)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite(cache, change):
    import numpy as np
    path = _train_cache(cache)
    with np.load(path) as data:
        features, labels = change(data["features"].copy(), data["labels"].copy())
    np.savez(path, features=features, labels=labels)


def _label_out_of_range(f, y):  # N39
    y[0] = 10 ** 6
    return f, y


def _rows_permuted(f, y):  # N36: features and labels permuted together, a within-class swap included
    order = __import__("numpy").random.default_rng(0).permutation(len(y))
    return f[order], y[order]


def _rows_permuted_within_class(f, y):  # N36: labels unchanged, only the features moved
    first, second = [i for i in range(len(y)) if y[i] == y[0]][:2]
    f[[first, second]] = f[[second, first]]
    return f, y


def _ten_rows_fewer(f, y):  # N40
    return f[:-10], y


CACHE_DAMAGE = {
    "object-array": _damage_object_array,
    "truncated-npz": _damage_truncate,
    "label-out-of-range": lambda cache: _rewrite(cache, _label_out_of_range),
    "rows-permuted": lambda cache: _rewrite(cache, _rows_permuted),
    "rows-swapped-within-a-class": lambda cache: _rewrite(cache, _rows_permuted_within_class),
    "ten-feature-rows-fewer": lambda cache: _rewrite(cache, _ten_rows_fewer),
    "manifest-removed": lambda cache: _train_cache(cache).with_suffix(".json").unlink(),
}


@pytest.mark.parametrize("case", sorted(CACHE_DAMAGE))
def test_a_damaged_feature_cache_is_computed_again_and_said(case, files, knn_reference, tool, tmp_path, caplog):
    reference, cache = knn_reference
    shutil.copytree(cache, tmp_path / "cache")
    CACHE_DAMAGE[case](tmp_path / "cache")
    code, _, stderr = tool(*_fill(KNN + ["--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "r.json")],
                                  files, tmp_path))
    assert code == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    said = caplog.text + stderr  # a warning of the eval.features logger (on the console: Python's last resort)
    assert re.search(r"cached features .*train-.*\.npz .*: computing them again", said), said[-2000:]
    knn = json.loads((tmp_path / "r.json").read_text())["details"]["knn"]
    assert knn == reference["details"]["knn"]  # as a fresh computation


def test_an_intact_feature_cache_is_used_silently(files, knn_reference, tool, tmp_path, caplog):
    reference, cache = knn_reference
    shutil.copytree(cache, tmp_path / "cache")
    code, _, stderr = tool(*_fill(KNN + ["--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "r.json")],
                                  files, tmp_path))
    assert code == 0 and "computing them again" not in stderr + caplog.text
    assert "features train" not in stderr  # nothing computed
    assert json.loads((tmp_path / "r.json").read_text())["details"]["knn"] == reference["details"]["knn"]


# --- pretrain_net --resume on damaged state, and a damaged job record ----------------------------------------------

@pytest.fixture(scope="module")
def finished_run(files, tmp_path_factory):
    """The output folder of a finished tiny pretraining run."""
    from sslt_core.cli import run
    from tests.conftest import _tool_module

    d = tmp_path_factory.mktemp("pre")
    with pytest.raises(SystemExit) as done:
        run(_tool_module("pretrain_net").main, _fill(pretrain()[1:], files, d))
    assert done.value.code in (0, None)
    return d / "pre"


def _edit_checkpoint(change):
    def damage(folder):
        state = torch.load(folder / "checkpoint.pth", weights_only=False)
        change(state)
        torch.save(state, folder / "checkpoint.pth")
    return damage


def _non_utf8_metrics(folder):
    with open(folder / "metrics.jsonl", "ab") as file:
        file.write(b'{"step": 1, "loss": "\xff\xfe"}\n')


RESUME_DAMAGE = {
    "empty-rank-state": (_edit_checkpoint(lambda s: s.update(ranks=[{}])), "lacks the method's or the RNG's state"),
    "negative-step": (_edit_checkpoint(lambda s: s.update(step=-3)), "records step -3"),  # N51
    "step-past-the-end": (_edit_checkpoint(lambda s: s.update(step=10 ** 9)), "records step 1000000000"),
    "step-a-float": (_edit_checkpoint(lambda s: s.update(step=1.5)), "records step 1.5"),
    "rng-state-garbage": (_edit_checkpoint(lambda s: s["ranks"][0]["rng"].update(torch=torch.zeros(3))),
                          "the state of process 0 is damaged"),
    "partial-epoch-garbage": (_edit_checkpoint(lambda s: s.update(partial_epoch="x")), "partial_epoch is not"),
    "non-utf8-metrics-line": (_non_utf8_metrics, r"metrics.jsonl line \d+ is not UTF-8"),  # N52
}


@pytest.mark.parametrize("case", sorted(RESUME_DAMAGE))
def test_resume_from_damaged_state_gives_one_line_and_changes_nothing(case, files, finished_run, tool, tmp_path):
    damage, expected = RESUME_DAMAGE[case]
    folder = tmp_path / "pre"
    shutil.copytree(finished_run, folder)
    damage(folder)
    before = _digest(folder)
    code, _, stderr = tool(*_fill(pretrain("--resume"), files, tmp_path))
    _one_line_error(code, stderr, expected)
    after = _digest(folder)
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


@pytest.mark.parametrize("content", ["{}", "[1]", '{"launcher": "slurm"}', "not json", b"\xff\xfe"])
def test_a_damaged_job_record_gives_one_line(content, files, tool, tmp_path):
    """N56: OUTPUT/job.json holding {} (or other damage) before a submission."""
    (tmp_path / "pre").mkdir()
    record = tmp_path / "pre" / "job.json"
    record.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, stderr = tool(*_fill(pretrain("--launcher", "submitit-local", "--gpus-per-node", "0"), files, tmp_path))
    _one_line_error(code, stderr, r"job\.json is not a (readable )?job record")
    assert not (tmp_path / "pre" / "slurm").exists()


# --- tables: a model name cannot break the markup (N83, N84) ------------------------------------------------------

HOSTILE_NAMES = ["a|b\nc", "x\ue000y\ue001z}", "\\textbf{", "}{&%$#_^~", "line\u2028sep", "**bold** `code` <b>"]


def _results(tmp_path, names):
    paths = []
    for i, name in enumerate(names):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps({"name": name, "linear": {"top1": 50.0 + i}, "epochs": 100}))
        paths.append(path)
    return paths


def _unescaped(text, char):
    """How many `char` in `text` are not preceded by an odd number of backslashes."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*" + re.escape(char), text))


def test_markdown_rows_keep_their_columns_whatever_the_name(tool, tmp_path):
    code, stdout, stderr = tool("make_table", *_results(tmp_path, HOSTILE_NAMES))
    assert code == 0, stderr
    linear = stdout.split("\n\n")[0].splitlines()
    assert len(linear) == 2 + len(HOSTILE_NAMES)  # header, rule, one line per model
    columns = _unescaped(linear[0], "|")
    assert all(_unescaped(line, "|") == columns for line in linear)
    assert r"a\|b c" in stdout and r"\*\*bold\*\* \`code\` \<b\>" in stdout


def _balanced(text):
    depth = 0
    for match in re.finditer(r"\\.|[{}]", text):
        token = match.group(0)
        if token in ("{", "}"):
            depth += 1 if token == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def test_latex_cells_balance_and_bold_only_the_best_value(tool, tmp_path):
    code, stdout, stderr = tool("make_table", *_results(tmp_path, HOSTILE_NAMES), "--format", "latex")
    assert code == 0, stderr
    rows = [line for line in stdout.split("\n\n")[0].splitlines() if line.endswith(r"\\")]
    assert len(rows) == 1 + len(HOSTILE_NAMES)
    for row in rows:
        assert _balanced(row), row
        assert _unescaped(row, "&") == _unescaped(rows[0], "&"), row
    assert stdout.count(r"\textbf{") == 1  # the best linear value; the name "\textbf{" comes out escaped
    assert "x\ue000y\ue001z\\}" in stdout and r"\textbackslash{}textbf\{" in stdout
    assert r"\}\{\&\%\$\#\_\textasciicircum{}\textasciitilde{}" in stdout


def test_a_detection_value_out_of_range_in_a_results_file_is_one_line(tool, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "x", "detection": {"voc07": {"mean": {"bbox": {"AP50": 1e308}}}}}))
    code, _, stderr = tool("make_table", path)
    _one_line_error(code, stderr, r"detection\.voc07\.mean\.bbox\.AP50 must be a percentage in \[0, 100\]")


@pytest.mark.parametrize("line, expected", [
    ('{"output_std_reference": 0.04, "loss": 1}', r"metrics\.jsonl: record 1 has epoch None"),
    ("not json", r"metrics\.jsonl line 1 is not a JSON record"),
])
def test_the_report_refuses_a_damaged_metrics_line_in_one_line(line, expected, tmp_path):
    from sslt_core.errors import ResultsError
    from sslt_pipeline.report import epoch_curves

    (tmp_path / "metrics.jsonl").write_text(line + "\n")
    with pytest.raises(ResultsError, match=expected):
        epoch_curves(tmp_path)


@pytest.mark.parametrize("folder", ["plots", "results"])
def test_the_pipeline_refuses_a_planted_folder_link_before_any_stage(folder, files, tool, tmp_path):
    out, outside = tmp_path / "p", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / folder).symlink_to(outside)
    config = test_bad_inputs.pipeline_config()
    (tmp_path / "pipeline.yaml").write_text(json.dumps(config).replace("{data}", str(files["data"])))
    code, _, stderr = tool("run_pipeline", "--config", tmp_path / "pipeline.yaml", "--output-dir", out)
    _one_line_error(code, stderr, rf"{folder} exists and is not a folder")
    assert not any(outside.iterdir())
    assert not (out / "manifest.json").exists()
