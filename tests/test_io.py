"""Atomic writes: whole files or nothing, with the permissions a plain open() would give."""
from __future__ import annotations

import stat

import pytest

from mturk_eval.io import atomic_directory, atomic_write_text, read_jsonl, write_jsonl
from mturk_eval.errors import UserError


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_write_gives_umask_permissions(tmp_path, monkeypatch, umask, file_mode, dir_mode):
    import mturk_eval.io as io_mod

    monkeypatch.setattr(io_mod, "_UMASK", umask)  # read once at import in real use
    atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    with atomic_directory(tmp_path / "d") as d:
        (d / "f").write_text("y")
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == dir_mode


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "r.jsonl"
    write_jsonl(p, [{"a": 1}, {"b": "ü"}])
    assert read_jsonl(p) == [{"a": 1}, {"b": "ü"}]
    atomic_write_text(p, "{}\n")
    assert p.read_text() == "{}\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.jsonl"]


def test_failed_atomic_directory_keeps_the_old_one(tmp_path):
    final = tmp_path / "out"
    with atomic_directory(final) as d:
        (d / "old").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as d:
            (d / "new").write_text("2")
            raise RuntimeError("boom")
    assert sorted(x.name for x in final.iterdir()) == ["old"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out"]


def test_read_jsonl_errors_name_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(UserError, match=r"x.jsonl:2: expected a JSON object"):
        read_jsonl(p)
