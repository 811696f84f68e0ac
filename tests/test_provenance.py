"""companion.provenance: the code version and device name recorded with committed results."""

import re
import subprocess

import companion.provenance as provenance


def test_git_state_of_this_checkout():
    state = provenance.git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"])
    assert isinstance(state["clean"], bool)


def test_dirty_tracked_file_and_exclusions(tmp_path, monkeypatch):
    """A changed tracked file makes the tree unclean unless its folder is excluded; untracked
    files never count."""
    run = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*run, "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run([*run, "-C", str(tmp_path), "commit", "-qm", "c"], check=True)
    monkeypatch.setattr(provenance, "REPOSITORY", tmp_path)
    assert provenance.git_state()["clean"] is True
    (tmp_path / "untracked.txt").write_text("new")
    assert provenance.git_state()["clean"] is True
    (tmp_path / "results" / "r.json").write_text('{"a": 1}')
    assert provenance.git_state()["clean"] is False
    assert provenance.git_state("results")["clean"] is True
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_state("results")["clean"] is False


def test_outside_a_checkout_both_are_none(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPOSITORY", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert provenance.git_state() == {"commit": None, "clean": None}


def test_device_name_of_the_cpu_is_not_empty():
    assert provenance.device_name("cpu").strip()
