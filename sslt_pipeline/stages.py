"""Resumable stages with a manifest: what the pipeline (sslt_pipeline/pipeline.py) is made of.

A stage has an id, a spec (everything its result depends on: config contents, overrides, the hashes of the
stages it reads) and a function that writes into the stage's own folder. The manifest records each stage's
spec hash and status. A stage whose hash is recorded as done is skipped; one whose spec changed is cleared and
re-run, and so is everything downstream (their specs hold its hash); one that was interrupted runs again in its
folder, where its own resume logic picks up. A stage that fails is recorded with its reason, the stages that
need it are marked failed too, and the others go on.
"""
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sslt_core.atomic import write_json_atomic


@dataclass
class Stage:
    id: str  # e.g. "simsiam/pretrain"
    spec: dict  # JSON-serialisable: what the result depends on
    run: object  # callable(folder: Path, inputs: {needed stage id: its outputs}) -> dict (JSON-serialisable)
    needs: tuple = ()  # ids of the stages whose outputs this one reads
    hash: str = field(default="", init=False)


class Manifest:
    def __init__(self, path):
        self.path = Path(path)
        self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self):
        write_json_atomic(self.path, self.entries)


def spec_hash(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_stages(stages, output_dir, log=print):
    """Run `stages` (in dependency order) under `output_dir`; return {id: manifest entry}."""
    output_dir = Path(output_dir)
    manifest = Manifest(output_dir / "manifest.json")
    done = {}
    for stage in stages:
        upstream = {need: done[need] for need in stage.needs}
        stage.hash = spec_hash({"spec": stage.spec, "needs": {k: v["hash"] for k, v in upstream.items()}})
        folder = output_dir / stage.id
        entry = manifest.entries.get(stage.id, {})
        failed_needs = [k for k, v in upstream.items() if v["status"] != "done"]
        if failed_needs:
            result = {"status": "failed", "reason": f"needs {failed_needs[0]}, which failed", "hash": stage.hash}
        elif entry.get("hash") == stage.hash and entry.get("status") == "done":
            log(f"[skip] {stage.id}: done, unchanged")
            result = entry
        else:
            if entry.get("hash") not in (None, stage.hash) and folder.exists():
                log(f"[redo] {stage.id}: its inputs changed")
                shutil.rmtree(folder)
            elif entry:
                log(f"[{'retry' if entry.get('status') == 'failed' else 'resume'}] {stage.id}")
            else:
                log(f"[run] {stage.id}")
            folder.mkdir(parents=True, exist_ok=True)
            manifest.entries[stage.id] = {"status": "running", "hash": stage.hash}
            manifest.save()
            start = time.time()
            try:
                outputs = stage.run(folder, {k: v.get("outputs", {}) for k, v in upstream.items()})
                result = {"status": "done", "hash": stage.hash, "outputs": outputs or {},
                          "seconds": round(time.time() - start, 1)}
            except Exception as error:  # a failed stage marks its row; the others go on
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
                log(f"[failed] {stage.id}: {reason}")
                result = {"status": "failed", "hash": stage.hash, "reason": reason}
        manifest.entries[stage.id] = result
        manifest.save()
        done[stage.id] = result
    return done
