"""Stages and their manifest (sslt_pipeline/stages.py runs them): a stage's id, spec, hash and status."""
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sslt_core.atomic import write_json_atomic
from sslt_core.errors import ConfigError, OutputError


@dataclass
class Stage:
    id: str  # e.g. "simsiam/pretrain"
    spec: dict  # JSON-serialisable: what the result depends on
    run: object  # callable(folder: Path, inputs: {needed stage id: its outputs}) -> dict (JSON-serialisable)
    needs: tuple = ()  # ids of the stages whose outputs this one reads
    kind: str = None  # pretrain | convert | an evaluation's resource kind: what its job asks for (never guessed)
    hash: str = field(default="", init=False)


class Manifest:
    def __init__(self, path):
        self.path = Path(path)
        try:
            self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OutputError(f"{self.path} is not valid JSON; delete it to run every stage again") from None
        if not isinstance(self.entries, dict):
            raise OutputError(f"{self.path} does not hold stage entries; delete it to run every stage again")

    def record(self, stage_id, entry):
        self.entries[stage_id] = entry
        write_json_atomic(self.path, self.entries)


def spec_hash(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reason(error):
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300]


def prepare_folder(stage, entry, folder, log):
    """Clear a stage folder whose inputs changed; say what is about to happen."""
    if entry.get("hash") not in (None, stage.hash) and folder.exists():
        log(f"[redo] {stage.id}: its inputs changed")
        shutil.rmtree(folder)
    elif entry:
        log(f"[{'retry' if entry.get('status') == 'failed' else 'resume'}] {stage.id}")
    else:
        log(f"[run] {stage.id}")
    folder.mkdir(parents=True, exist_ok=True)


def hash_and_check(stages, output_dir):
    hashes = {}
    for stage in stages:
        stage.hash = spec_hash({"spec": stage.spec, "needs": {k: hashes[k] for k in stage.needs}})
        hashes[stage.id] = stage.hash
        folder = output_dir / stage.id
        if not folder.resolve().is_relative_to(output_dir.resolve()):  # never write (or remove) outside OUTPUT
            raise ConfigError(f"stage {stage.id!r} would live outside {output_dir}; model names must not hold "
                              "'..' or '/'")


def settled(stage, manifest, done, log):
    """The stage's entry if nothing needs running (done and unchanged, or skipped: a need did not finish), else
    None."""
    entry = manifest.entries.get(stage.id, {})
    unmet = [k for k in stage.needs if done[k]["status"] != "done"]
    if unmet:  # not run: what it reads failed (or was itself skipped)
        why = "failed" if done[unmet[0]]["status"] == "failed" else "was skipped"
        return {"status": "skipped", "reason": f"needs {unmet[0]}, which {why}", "hash": stage.hash}
    if entry.get("hash") == stage.hash and entry.get("status") == "done":
        log(f"[skip] {stage.id}: done, unchanged")
        return entry
    return None


