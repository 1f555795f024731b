"""Outputs written in place never go through a planted link or into a pipe; temporary names fit NAME_MAX; YAML
aliases are bounded without refusing the anchors real configs use."""
import os
import threading

import pytest

from sslt_core.atomic import NAME_MAX, _temporary_name, _writer_is_gone, open_output, write_bytes_atomic
from sslt_core.config import ConfigError, read_yaml
from sslt_core.errors import OutputError


@pytest.mark.parametrize("mode", ["a", "w", "r+b"])
def test_a_link_is_refused_and_its_target_keeps_its_bytes(tmp_path, mode):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (tmp_path / "log.txt").symlink_to(victim)
    with pytest.raises(OutputError, match="log.txt exists and is not a regular file"):
        open_output(tmp_path / "log.txt", mode)
    assert victim.read_bytes() == b"keep me"


def test_a_dangling_link_creates_nothing(tmp_path):
    (tmp_path / "metrics.jsonl").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError):
        open_output(tmp_path / "metrics.jsonl", "a")
    assert not (tmp_path / "elsewhere").exists()


def test_a_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "log.txt")
    result = []
    thread = threading.Thread(target=lambda: result.append(pytest.raises(OutputError, open_output,
                                                                         tmp_path / "log.txt", "a")))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and result  # open(2) of a pipe without a reader would wait forever


def test_a_regular_file_is_appended_to_and_a_new_one_created(tmp_path):
    (tmp_path / "log.txt").write_text("one\n")
    with open_output(tmp_path / "log.txt", "a") as file:
        file.write("two\n")
    with open_output(tmp_path / "new.txt", "w") as file:
        file.write("x")
    assert (tmp_path / "log.txt").read_text() == "one\ntwo\n" and (tmp_path / "new.txt").read_text() == "x"


def test_temporary_names_of_long_names_fit_and_stay_recognisable(tmp_path):
    target = tmp_path / ("é" * 120 + ".pkl")  # 244 bytes: the temporary name of old was 280
    tmp = _temporary_name(target, "abcd1234")
    assert len(os.fsencode(tmp.name)) <= NAME_MAX and tmp.suffix == ".pkl" and tmp.name.startswith(".")
    assert _writer_is_gone(tmp.name) is False  # this process: its writer lives
    write_bytes_atomic(target, b"data")
    assert target.read_bytes() == b"data" and sorted(tmp_path.iterdir()) == [target]


def test_anchors_and_merge_keys_of_real_configs_still_load(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {lr: 0.1, wd: 0.0001}\ntrain:\n  <<: *b\n  lr: 0.2\nlists: [*b, *b, *b]\n")
    assert read_yaml(path)["train"] == {"lr": 0.2, "wd": 0.0001}


def test_an_alias_to_its_own_enclosing_node_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &a [1, *a]\n")  # expands forever
    with pytest.raises(ConfigError, match="expand to more than"):
        read_yaml(path)
