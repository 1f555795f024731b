"""The pipeline's stage runner: skip what is done, resume what was interrupted, redo only what a change touches,
and carry a failure to the stages that need it while the others go on."""
import json

from sslt_pipeline.stages import Stage, run_stages


class Recorder:
    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def stage(self, stage_id, spec, needs=()):
        def run(folder, inputs):
            self.calls.append(stage_id)
            if stage_id in self.fail:
                raise RuntimeError(f"{stage_id} broke")
            (folder / "out.txt").write_text(json.dumps(inputs, sort_keys=True))
            return {"value": f"{stage_id}:{spec}"}

        return Stage(stage_id, spec, run, needs)


def chain(recorder, pretrain_spec=1, knn_spec=1):
    return [recorder.stage("a/pretrain", pretrain_spec), recorder.stage("a/knn", knn_spec, ("a/pretrain",)),
            recorder.stage("a/voc", 1, ("a/pretrain",)), recorder.stage("b/knn", 1)]


def test_a_second_run_skips_everything(tmp_path):
    first = Recorder()
    run_stages(chain(first), tmp_path, log=lambda m: None)
    assert first.calls == ["a/pretrain", "a/knn", "a/voc", "b/knn"]
    second = Recorder()
    entries = run_stages(chain(second), tmp_path, log=lambda m: None)
    assert second.calls == [] and all(e["status"] == "done" for e in entries.values())


def test_a_stage_receives_the_outputs_of_the_stages_it_needs(tmp_path):
    run_stages(chain(Recorder()), tmp_path, log=lambda m: None)
    assert json.loads((tmp_path / "a" / "knn" / "out.txt").read_text()) == {"a/pretrain": {"value": "a/pretrain:1"}}


def test_a_changed_config_reruns_only_the_stages_that_depend_on_it(tmp_path):
    run_stages(chain(Recorder()), tmp_path, log=lambda m: None)
    knn_changed = Recorder()
    run_stages(chain(knn_changed, knn_spec=2), tmp_path, log=lambda m: None)
    assert knn_changed.calls == ["a/knn"]
    pretrain_changed = Recorder()
    run_stages(chain(pretrain_changed, pretrain_spec=2, knn_spec=2), tmp_path, log=lambda m: None)
    assert pretrain_changed.calls == ["a/pretrain", "a/knn", "a/voc"]  # b/knn does not depend on it


def test_an_interrupted_stage_runs_again_in_its_folder(tmp_path):
    run_stages(chain(Recorder()), tmp_path, log=lambda m: None)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["a/voc"]["status"] = "running"  # as if the process died inside it
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "a" / "voc" / "checkpoint").write_text("partial work")
    again, messages = Recorder(), []
    run_stages(chain(again), tmp_path, log=messages.append)
    assert again.calls == ["a/voc"] and "[resume] a/voc" in messages
    assert (tmp_path / "a" / "voc" / "checkpoint").read_text() == "partial work"  # left for the stage to resume


def test_a_failure_marks_what_needs_it_and_the_rest_goes_on(tmp_path):
    broken = Recorder(fail={"a/pretrain"})
    entries = run_stages(chain(broken), tmp_path, log=lambda m: None)
    assert broken.calls == ["a/pretrain", "b/knn"]
    assert entries["a/pretrain"]["reason"] == "RuntimeError: a/pretrain broke"
    assert entries["a/knn"] == {"status": "skipped", "reason": "needs a/pretrain, which failed",
                                "hash": entries["a/knn"]["hash"]}
    assert entries["b/knn"]["status"] == "done"
    fixed = Recorder()
    run_stages(chain(fixed), tmp_path, log=lambda m: None)
    assert fixed.calls == ["a/pretrain", "a/knn", "a/voc"]


def test_a_stage_of_no_known_kind_is_an_error_not_another_kinds_resources(tmp_path):
    """Every stage kind is pretrain, convert or a registered evaluation's; anything else is refused, never given
    detection's (or any) resources."""
    import pytest

    from evaluations.registry import EVALUATIONS
    from sslt_core.errors import ConfigError
    from sslt_pipeline.config import default_resources
    from sslt_pipeline.pipeline import job_launcher

    kinds = default_resources()
    assert {"pretrain", "convert"} | {e.resource_kind for e in EVALUATIONS.values()} == set(kinds)
    launch = job_launcher(type("Config", (), {"resources": {}})(), "submitit-local")
    for kind in (None, "no_such_kind"):
        with pytest.raises(ConfigError, match="not one of pretrain, convert"):
            launch(Stage("m/x", {}, lambda folder, inputs: {}, kind=kind), tmp_path, {}, tmp_path / "job")
