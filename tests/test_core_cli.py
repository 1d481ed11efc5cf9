"""The user's commands without options: config discovery, `init`, the platform registry and `[platform]`,
the instance check, and `publish --sandbox` on the bundled sandbox in the background (found, restarted,
stopped) with `sandbox simulate` and `report` finding it."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.mturk import FakeMTurk, write_responses
from mturk_eval.cli import main
from mturk_eval.ledger import Ledger, ledger_path


def run(args, cwd: Path | None = None, env: dict | None = None):
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return CliRunner().invoke(main, args, env={"MTURK_EVAL_CONFIG": None, **(env or {})})
    finally:
        os.chdir(old)


def one_line_error(res, *parts: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and res.output.strip().count("\n") == 0, res.output
    for p in parts:
        assert p in res.output, res.output


def write_cfg(d: Path, extra: str = "", name: str = "exp1") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "mturk-eval.toml"
    p.write_text(f'[experiment]\nname = "{name}"\nruns_dir = "{d / "runs"}"\n{extra}', encoding="utf-8")
    return p


# ------------------------------------------------------------------ config discovery and init

def test_config_is_found_in_the_nearest_parent_or_the_environment(tmp_path):
    write_cfg(tmp_path / "study", name="parent")
    sub = tmp_path / "study" / "a" / "b"
    sub.mkdir(parents=True)
    res = run(["status", "--offline"], cwd=sub)
    one_line_error(res, str(tmp_path / "study" / "runs" / "parent" / "ledger.sandbox.sqlite"), "no ledger here yet")
    other = write_cfg(tmp_path / "other", name="fromenv")
    res = run(["status", "--offline"], cwd=sub, env={"MTURK_EVAL_CONFIG": str(other)})
    one_line_error(res, str(tmp_path / "other" / "runs" / "fromenv"))
    res = run(["status", "--offline", "--config", str(other)], cwd=sub)
    one_line_error(res, "fromenv")


def _commands_with_a_config():
    """Every command of `mturk-eval` (groups walked) that takes --config: read from the CLI, not listed."""
    from helpers.commands import all_commands

    return [path for path, cmd in all_commands(main) if any("--config" in p.opts for p in cmd.params)]


@pytest.mark.parametrize("verb", _commands_with_a_config(), ids=" ".join)
def test_no_config_anywhere_is_one_line_naming_both_ways_and_init(tmp_path, verb):
    import click

    cmd, ctx = main, click.Context(main)
    for name in verb:
        cmd = cmd.get_command(ctx, name)
    args = ["x" for p in cmd.params if isinstance(p, click.Argument) and p.required]  # e.g. participants' ID
    res = run([*verb, *args], cwd=tmp_path)
    one_line_error(res, "$MTURK_EVAL_CONFIG", "mturk-eval.toml", "mturk-eval init")
    assert list(tmp_path.iterdir()) == []


def test_every_workflow_verb_finds_its_config():
    names = {" ".join(v) for v in _commands_with_a_config()}
    assert {"publish", "status", "collect", "review", "expire", "preview", "generate", "report", "distinct",
            "data build", "sandbox simulate", "sandbox stop"} <= names


def test_init_writes_a_commented_config_that_loads_and_never_overwrites(tmp_path):
    from mturk_eval.config import load_config

    d = tmp_path / "mystudy"
    res = run(["init", str(d)])
    assert res.exit_code == 0, res.output
    text = (d / "mturk-eval.toml").read_text(encoding="utf-8")
    assert text.startswith("# mturk-eval.toml") and "closed on 2026-09-30" in text and "[platform]" in text
    cfg = load_config(d / "mturk-eval.toml")
    assert cfg.name == "demo" and cfg.platform.name == "mturk" and Path(cfg.runs_dir) == d / "runs"
    assert all(Path(s.path).is_file() for s in cfg.data.persona_sources + cfg.data.general_sources)
    # found from inside the folder without --config
    res = run(["status", "--offline"], cwd=d)
    one_line_error(res, str(d / "runs" / "demo"))
    before = text
    res = run(["init", "--from", "paper_en", str(d)])
    one_line_error(res, "mturk-eval.toml: already exists")
    assert (d / "mturk-eval.toml").read_text(encoding="utf-8") == before
    assert sorted(p.name for p in d.iterdir()) == ["mturk-eval.toml"]
    res = run(["init", "--from", "paper_ja"], cwd=tmp_path)
    assert res.exit_code == 0 and "language = \"ja\"" in (tmp_path / "mturk-eval.toml").read_text(encoding="utf-8")


def test_init_reads_its_experiments_as_package_data_so_it_works_from_a_wheel(tmp_path):
    """`init` once read the source tree's experiments/ folder, missing from an installed wheel. The
    experiments are package data now: found through importlib.resources, listed in pyproject's
    package-data, and init works from a copy of the package holding only what a wheel holds."""
    import importlib.resources
    import shutil
    import subprocess
    import sys
    import tomllib

    from mturk_eval.actions.init import TEMPLATES, experiment_file

    pkg = importlib.resources.files("mturk_eval")
    for t in TEMPLATES:
        assert experiment_file(t).is_file() and pkg.joinpath("experiments", f"{t}.toml").read_text().strip()
    root = Path(__file__).resolve().parent.parent
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = root / "mturk_eval"
    wheel = tmp_path / "site" / "mturk_eval"
    shipped = {p for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    shipped |= {p for pattern in setup["package-data"]["mturk_eval"] for p in src.glob(pattern) if p.is_file()}
    for p in shipped:
        (wheel / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, wheel / p.relative_to(src))
    code = ("import mturk_eval, sys; assert mturk_eval.__file__.startswith(sys.argv[1]), mturk_eval.__file__;"
            "from mturk_eval.actions.init import init; from mturk_eval.config import load_config;"
            "r = init(sys.argv[2]); c = load_config(r.path);"
            "print(all(s.startswith(sys.argv[1]) for s in [x.path for x in c.data.persona_sources]))")
    out = subprocess.run([sys.executable, "-c", code, str(wheel.parent), str(tmp_path / "study")],
                         env={**os.environ, "PYTHONPATH": str(wheel.parent)}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert (tmp_path / "study" / "mturk-eval.toml").is_file()


# ------------------------------------------------------------------ platform registry and [platform]

def test_unknown_platform_in_the_config_or_option_is_one_line(tmp_path):
    cfg = write_cfg(tmp_path, '[platform]\nname = "mechanical-turtle"\n')
    for verb in (["publish"], ["status", "--offline"], ["collect"], ["report"]):
        res = run([*verb, "--config", str(cfg)])
        one_line_error(res, "mturk-eval.toml: platform.name: unknown platform 'mechanical-turtle'",
                       "known: links, mturk, prolific")
    cfg = write_cfg(tmp_path)
    res = run(["status", "--config", str(cfg), "--platform", "nope"])
    one_line_error(res, "--platform: unknown platform 'nope'")
    cfg = write_cfg(tmp_path, '[platform]\nname = "mturk"\ncolour = "red"\n')
    one_line_error(run(["status", "--config", str(cfg)]), "unknown key 'platform.colour'")
    cfg = write_cfg(tmp_path, '[platform.mturk]\ntarget = "moon"\n')
    one_line_error(run(["status", "--config", str(cfg)]), "platform.mturk.target: expected one of sandbox, live,"
                                                          " local, got 'moon'")
    assert not (tmp_path / "runs").exists()


def test_registry_is_a_plain_map_and_names_a_missing_package():
    from mturk_eval.errors import UserError
    from mturk_eval.platforms import registry
    from mturk_eval.platforms.mturk.mturk_platform import MTurkPlatform

    assert set(registry.PLATFORMS) == {"mturk", "links", "prolific"}
    assert registry.get_platform("mturk") is MTurkPlatform
    for name in ("links", "prolific"):
        try:
            cls = registry.get_platform(name)
        except UserError as exc:
            assert "is not part of this installation" in exc.message
        else:
            assert cls.name == name


def test_live_mturk_first_says_that_mturk_closed(tmp_path, use_platform):
    from mturk_eval.platforms.mturk.mturk_platform import MTurkPlatform

    use_platform(lambda name, **s: MTurkPlatform.from_settings(MTurkPlatform.Settings(**s)))
    cfg = write_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    res = run(["publish", "--config", str(cfg), "--responses", str(responses), "--live", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith("note: Amazon Mechanical Turk closed on 2026-09-30")


# ------------------------------------------------------------------ the ledger's instance

def test_a_verb_aimed_at_another_instance_is_refused(tmp_path, use_platform):
    class Endpoint(FakeMTurk):
        def __init__(self, url):
            super().__init__()
            self.url = url

        @property
        def instance(self):
            return self.url

    plats = {}
    use_platform(lambda name, **s: plats.setdefault(s["endpoint_url"], Endpoint(s["endpoint_url"])))
    cfg = write_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    a, b = "http://127.0.0.1:1111", "http://127.0.0.1:2222"
    res = run(["publish", "--config", str(cfg), "--responses", str(responses), "--endpoint-url", a, "--no-progress"])
    assert res.exit_code == 0, res.output
    path = ledger_path(__import__("mturk_eval.config", fromlist=["load_config"]).load_config(cfg), "local")
    before = path.read_bytes()
    for verb in (["status"], ["collect"], ["review", "--apply"], ["expire"],
                 ["publish", "--responses", str(responses)]):
        res = run([*verb, "--config", str(cfg), "--endpoint-url", b])
        one_line_error(res, f"this ledger's tasks were made on {a}, not on {b}")
    assert path.read_bytes() == before
    assert plats[b].create_calls == 0
    with Ledger.open(path) as led:
        assert (led.get_meta("platform"), led.get_meta("instance")) == ("mturk", a)


# ------------------------------------------------------------------ the bundled sandbox in the background

def test_publish_sandbox_runs_the_bundled_server_that_every_verb_finds(tmp_path):
    from mturk_eval.config import load_config
    from mturk_eval.emulators.background import read_record, stop_sandbox

    cfg_path = write_cfg(tmp_path / "study", '[hit]\nassignments_per_hit = 2\n')
    cfg = load_config(cfg_path)
    write_responses(cfg.run_dir / "responses.jsonl", 3)
    d = tmp_path / "study"
    try:
        res = run(["publish", "--sandbox", "--no-progress"], cwd=d)
        assert res.exit_code == 0, res.output
        rec = read_record(cfg.run_dir)
        assert rec.url.startswith("http://127.0.0.1:") and rec.state == str(cfg.run_dir.resolve() / "sandbox" / "state.sqlite")
        assert "started the bundled MTurk-compatible sandbox on " + rec.url in res.output
        assert f"workers see the HITs at {rec.url}/mturk/preview?groupId=" in res.output  # rate by hand there
        with Ledger.open(ledger_path(cfg, "sandbox")) as led:
            assert led.get_meta("instance") == f"the bundled MTurk sandbox ({rec.state})"
        res = run(["status"], cwd=d)
        assert res.exit_code == 0 and "HITs (MTurk):  Assignable 3" in res.output, res.output
        # the process dies: the next verb restarts it on the same state
        os.kill(rec.pid, signal.SIGKILL)
        _reap(rec.pid)
        res = run(["sandbox", "simulate", "--workers", "2", "--no-progress"], cwd=d)
        assert res.exit_code == 0, res.output
        assert f"the recorded process {rec.pid} was gone; same state" in res.output
        assert "6 simulated assignments submitted by 2 workers" in res.output
        new = read_record(cfg.run_dir)
        assert new.pid != rec.pid
        res = run(["report", "--no-plots", "--quiet"], cwd=d)
        assert res.exit_code == 0, res.output
        with Ledger.open(ledger_path(cfg, "sandbox")) as led:
            assert len(led.submissions()) == 6  # collected by report first
        res = run(["sandbox", "stop"], cwd=d)
        assert res.exit_code == 0 and f"stopped the bundled sandbox on {new.url}" in res.output
        assert read_record(cfg.run_dir) is None and not _running(new.pid)
        res = run(["status"], cwd=d)
        one_line_error(res, "no bundled sandbox for this experiment yet")
    finally:
        stop_sandbox(cfg.run_dir)


def _reap(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)


def _running(pid: int) -> bool:
    from mturk_eval.emulators.background import _running as running

    _reap(pid)
    return running(pid)
