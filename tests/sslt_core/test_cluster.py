"""Jobs through submitit: the sbatch script a 2-node, 8-GPU pretraining submits (against submitit's own rendering),
a scheduler's refusal as one line, no sbatch as one line, and a job preempted mid-run that requeues itself and
resumes from its checkpoint to the uninterrupted run's losses (submitit's local executor: the same code path as
SLURM but sbatch)."""
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from pretrain.job import PretrainJob
from pretrain.train import train
from sslt_core import cluster
from sslt_core.errors import ClusterError
from tests.pretrain.tiny import tiny_config

SBATCH_OK = "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\necho 'Submitted batch job 4242'\n"
SBATCH_REFUSES = ("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nowhere' >&2\n"
                  "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n")


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """A `sbatch` on PATH whose behaviour the test writes (no cluster here)."""
    folder = tmp_path / "bin"
    folder.mkdir()

    def install(script):
        for name, text in (("sbatch", script), ("srun", "#!/bin/sh\nexit 0\n"), ("sacct", "#!/bin/sh\nexit 0\n")):
            path = folder / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return folder

    return install


def test_the_sbatch_script_of_a_2_node_8_gpu_pretraining_is_submitits_rendering(fake_sbatch, tmp_path):
    fake_sbatch(SBATCH_OK)
    resources = cluster.Resources(nodes=2, gpus_per_node=8, cpus_per_task=10, time=4320, partition="learnfair",
                                  account="ssl")
    ex = cluster.executor("slurm", tmp_path / "jobs", resources, name="pretrain-swav")
    ours = ex._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "UID")
    expected = _make_sbatch_string(command="python -u -m submitit.core._submit FOLDER", folder=tmp_path / "jobs",
                                   job_name="pretrain-swav", nodes=2, ntasks_per_node=8, gpus_per_node=8,
                                   cpus_per_task=10, time=4320, partition="learnfair", account="ssl",
                                   signal_delay_s=cluster.SIGNAL_DELAY_S, additional_parameters={"requeue": True})
    assert ours == expected
    for directive in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--time=4320",
                      "--partition=learnfair", "--account=ssl", "--signal=USR2@120", "--requeue"):
        assert f"#SBATCH {directive}" in ours
    job = cluster.submit(ex, print, "hello")
    assert job.job_id == "4242"
    submitted = (tmp_path / "bin" / "calls").read_text().split()
    assert len(submitted) == 1 and submitted[0].endswith(".sh")
    # submitit leaves its temporary script name as a link: removed, as the tools' --resume refuses links
    assert [p.name for p in (tmp_path / "jobs").iterdir() if p.is_symlink()] == []


def test_a_refusal_is_one_line_with_sbatchs_message_and_the_script(fake_sbatch, tmp_path, capsys):
    fake_sbatch(SBATCH_REFUSES)
    ex = cluster.executor("slurm", tmp_path / "jobs", cluster.Resources(partition="nowhere"))
    with pytest.raises(ClusterError, match=r"refused the job: .*invalid partition specified: nowhere.*script: .*\.sh")\
            as raised:
        cluster.submit(ex, print, "hello")
    assert "\n" not in str(raised.value)
    assert capsys.readouterr().err == ""  # submitit prints sbatch's stderr on a refusal: not a second time here


def test_no_sbatch_fails_at_once(tmp_path, monkeypatch, tool):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="needs SLURM's sbatch, srun, sacct, which are not on this machine's PATH"):
        cluster.check_launcher("slurm")
    code, _, stderr = tool("pretrain_net", "--config", "configs/pretrain/simsiam_demo.yaml", "--launcher", "slurm",
                           "--output-dir", tmp_path / "out")
    assert code != 0 and stderr.strip().splitlines()[-1].startswith("error: --launcher slurm needs SLURM's sbatch")
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_preempted_job_requeues_itself_and_resumes_from_its_checkpoint(demo_root, tmp_path):
    run = tiny_config("simsiam", demo_root, extra=["train.epochs=4", "train.checkpoint_every=2"])
    train(run, tmp_path / "straight", progress=False)
    ex = cluster.executor("submitit-local", tmp_path / "jobs", cluster.Resources(time=30))
    job = cluster.submit(ex, PretrainJob(run, tmp_path / "preempted"))
    checkpoint = tmp_path / "preempted" / "checkpoint.pth"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.1)
    # SIGUSR2 to the job's task, as SLURM sends before preemption or the time limit. (submitit-local's
    # job._interrupt() signals its controller process, which dies of it and never reaches the task.)
    controller = job._process.pid
    task = int(Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0])
    os.kill(task, signal.SIGUSR2)
    cluster.wait(job)
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    assert f"Requeued job {job.job_id}" in log
    assert metrics(tmp_path / "preempted") == metrics(tmp_path / "straight")
    assert (tmp_path / "preempted" / "encoder.safetensors").is_file()


def test_a_failed_job_is_one_line_with_its_log_and_is_not_resubmitted(tmp_path):
    ex = cluster.executor("submitit-local", tmp_path / "jobs", cluster.Resources(time=5))
    job = cluster.submit(ex, int, "not a number")
    with pytest.raises(ClusterError, match=rf"job {job.job_id} failed \(.*ValueError.*\); its log: .*\.err"):
        cluster.wait(job)
    assert cluster.job_state("submitit-local", tmp_path / "jobs", job.job_id) == "failed"
    assert len(list((tmp_path / "jobs").glob("*_submitted.pkl"))) == 1


def _finished_job(tmp_path, result):
    """A job that has ended, whose result file holds `result` (pickled bytes)."""
    from types import SimpleNamespace

    (tmp_path / "0_result.pkl").write_bytes(result)
    return SimpleNamespace(job_id="7", wait=lambda: None,
                           paths=SimpleNamespace(result_pickle=tmp_path / "0_result.pkl", stderr=tmp_path / "0.err"))


def test_wait_reads_a_jobs_result_as_plain_data_and_a_planted_payload_never_runs(tmp_path):
    import pickle

    from sslt_core import cluster
    from sslt_core.errors import ClusterError
    from tests.sslt_core import hostile

    assert cluster.wait(_finished_job(tmp_path, pickle.dumps(("success", {"top1": 1.5})))) == {"top1": 1.5}
    with pytest.raises(ClusterError, match="ValueError: boom"):
        cluster.wait(_finished_job(tmp_path, pickle.dumps(("error", "Traceback ...\nValueError: boom\n"))))
    marker = tmp_path / "PAYLOAD_RAN"
    hostile.malicious_pkl(tmp_path / "evil.pkl", marker)
    with pytest.raises(ClusterError, match="is not plain data"):
        cluster.wait(_finished_job(tmp_path, (tmp_path / "evil.pkl").read_bytes()))
    assert not marker.exists()


def test_the_signal_comes_before_the_limit_and_never_at_a_start():
    """SLURM may signal up to 60 s before the --signal time and checks every 30 s (`man sbatch`, --signal): for a
    job of 2 minutes or more, the earliest signal is 30 s or more after the start and the latest 30 s or more
    before the limit; 120 s for every job of 5 minutes or more."""
    for minutes in range(2, 3000):
        delay = cluster.signal_delay_s(minutes)
        assert minutes * 60 - delay - 60 >= 30 and delay >= 30
        assert delay == (120 if minutes >= 5 else delay)
