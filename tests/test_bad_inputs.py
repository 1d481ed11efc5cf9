"""The bad-input catalogue (docs/bad-inputs.md): bad files, configs and options through the CLI.

Every case runs the real command through click's CliRunner and checks the same four things: exit status
2, one line naming the file/line/field (or option) and what was expected, no traceback, and nothing left
half-written: no new or changed files in the test's folder (not even the experiment's ``.lock.<target>``
file: every refusal comes before the lock is taken) and no ``*.tmp`` files from atomic writes.
Cases already covered elsewhere are listed in docs/bad-inputs.md with their own tests.
"""
from __future__ import annotations

import copy
import json
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.analysis import make_rows, responses_for
from helpers.generators import tiny_config_text
from helpers.mturk import FakeMTurk, NoCallsPlatform, make_cfg, response_row, write_responses
from mturk_eval.analysis.batch_csv import write_batch_csv
from mturk_eval.analysis.ratings import write_ratings_csv
from mturk_eval.cli import main
from mturk_eval.config import ASPECTS
from mturk_eval.io import write_jsonl

# ---------------------------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, lock files included (a refused run must not even take the lock)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes]


def fails_cleanly(args: list[str], root: Path, needle: str, *, stdin: str | None = None,
                  lock_rewritten: bool = False) -> str:
    """Run ``mturk-eval ARGS``; assert exit 2, one line containing ``needle``, no traceback, nothing
    new or changed under ``root`` and no ``*.tmp`` files. Returns the output. ``lock_rewritten``: the
    run took the experiment's (existing) lock, so the lock file names it as the last holder."""
    before = snapshot(root)
    res = CliRunner().invoke(main, args, input=stdin)
    out = res.output
    assert res.exit_code == 2, (res.exit_code, out, res.exception)
    assert "Traceback" not in out, out
    assert out.startswith("Error: ") and out.strip().count("\n") == 0, out
    assert needle in out, out
    # No garbage collection first: a ledger opened before a refusal is closed by then (no -wal/-shm
    # sidecars left open), even while ``res`` keeps the failing frames alive.
    after = snapshot(root)
    assert sorted(after) == sorted(before), sorted(set(after) ^ set(before))
    assert {k for k in after if after[k] != before[k] and not (lock_rewritten and "/.lock." in k)} == set()
    assert tmp_leftovers(root) == []
    return out


def write_config(tmp_path: Path, extra: str = "", name: str = "exp1") -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(f'[experiment]\nname = "{name}"\nruns_dir = "{tmp_path / "runs"}"\n{extra}', encoding="utf-8")
    return p


@pytest.fixture
def no_platform(use_platform):
    """No verb in these tests may reach a platform: every case fails before that."""
    use_platform(NoCallsPlatform())


# ---------------------------------------------------------------------------------------------- configs

UNKNOWN_KEY_VERBS = [
    ["data", "build"], ["generate", "--quiet"], ["distinct"], ["preview"], ["publish"], ["status", "--offline"],
    ["collect"], ["review"], ["expire"], ["report"], ["plan"],
    ["sandbox", "simulate", "--endpoint", "http://127.0.0.1:9", "--no-progress"],
    ["participants", "export", "AW1"], ["participants", "delete", "AW1"], ["participants", "new-key"],
]


@pytest.mark.parametrize("verb", UNKNOWN_KEY_VERBS, ids=lambda v: " ".join(v[:2]))
def test_unknown_config_key_for_every_verb(tmp_path, no_platform, verb):
    cfg = write_config(tmp_path, '[hit]\nreword = "0.05"\n')
    fails_cleanly([*verb, "--config", str(cfg)], tmp_path,
                  "exp.toml: unknown key 'hit.reword' (did you mean 'reward'?; known keys here: assignment_duration_s")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, needle", [
    (b"\xff\xfe\x00garbage", "exp.toml:1: not valid utf-8 text"),
    (b"[experiment\nname=", "exp.toml: not valid TOML"),
    (b'[experiment]\nname = "exp 1/.."\n', "exp.toml: name: expected letters, digits, '_', '.', '-', got 'exp 1/..'"),
    (b'[experiment]\nname = "e"\nlanguage = "fr"\n', "exp.toml: language: expected 'en' or 'ja', got 'fr'"),
    (b'[experiment]\nname = "e"\n[hit]\nitems_per_hit = 0\n', "exp.toml: hit.items_per_hit: expected an integer >= 1, got 0"),
    (b'[experiment]\nname = "e"\n[hit]\nattention_check_rate = 2\n',
     "exp.toml: hit.attention_check_rate: expected a number in [0, 1), got 2.0"),
], ids=["not_utf8", "not_toml", "bad_name", "unknown_language", "items_per_hit_0", "attention_rate_2"])
def test_bad_config_files(tmp_path, monkeypatch, text, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.toml").write_bytes(text)
    (tmp_path / "r.jsonl").write_text(json.dumps(response_row(0)) + "\n")
    fails_cleanly(["preview", "--config", "exp.toml", "--responses", "r.jsonl"], tmp_path, needle)


@pytest.mark.parametrize("verb", [["data", "build"], ["generate", "--quiet"]], ids=lambda v: v[0])
def test_config_whose_data_path_is_missing(tmp_path, verb):
    cfg = write_config(tmp_path, '[[data.persona_sources]]\nformat = "jsonl"\npath = "nothere.jsonl"\n')
    fails_cleanly([*verb, "--config", str(cfg)], tmp_path,
                  f"exp.toml: data.persona_sources: {tmp_path / 'nothere.jsonl'}: file not found")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("verb", [["preview"], ["publish", "--dry-run"], ["publish"]], ids=" ".join)
def test_missing_template_dir(tmp_path, no_platform, verb):
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path, '[hit]\ntemplate_dir = "no_such_dir"\n')
    fails_cleanly([*verb, "--config", str(cfg), "--responses", str(responses)], tmp_path,
                  f"exp.toml: hit.template_dir: {tmp_path / 'no_such_dir'}: folder not found")
    (tmp_path / "a_file").write_text("x")
    cfg = write_config(tmp_path, '[hit]\ntemplate_dir = "a_file"\n')
    fails_cleanly([*verb, "--config", str(cfg), "--responses", str(responses)], tmp_path,
                  f"exp.toml: hit.template_dir: {tmp_path / 'a_file'}: not a folder")
    assert not (tmp_path / "runs").exists()


def test_missing_config_file(tmp_path):
    fails_cleanly(["publish", "--config", str(tmp_path / "nope.toml")], tmp_path, "nope.toml: file not found")


# ---------------------------------------------------------------------------------------------- data files

GOOD_PERSONA_LINE = '{"persona": ["i like cats."], "utterance": "hi?", "response": "hello."}\n'
GOOD_GENERAL_LINE = '{"utterance": "hi?", "response": "hello.", "topic": "Relationship"}\n'

DATA_CASES = {
    "xpersona_not_a_list": ("persona", "xpersona", "x.json", '{"a": 1}', "x.json: expected a JSON list of dialogues, got dict"),
    "xpersona_bad_turn": ("persona", "xpersona", "x.json", '[{"persona": ["a."], "dialogue": [["hi"]]}]',
                          "x.json: dialogue 0, turn 0: expected [partner, responder] strings"),
    "synthetic_missing_columns": ("persona", "synthetic", "s.csv", "a,b\n1,2\n",
                                  "s.csv: missing column(s) 'user 1 personas', 'user 2 personas', 'Best Generated"
                                  " Conversation' (Synthetic-Persona-Chat CSV)"),
    "convai2_no_tab": ("persona", "convai2", "c.txt", "1 your persona: a.\n2 hi there no tab\n",
                       "c.txt:2: expected '<partner utterance>TAB<responder utterance>', found no TAB"),
    "persona_jsonl_utterance_not_a_string": ("persona", "jsonl", "p.jsonl",
                                             '{"persona": ["a."], "utterance": 5, "response": "r"}\n',
                                             "p.jsonl:1: field 'utterance' must be a non-empty string"),
    "dailydialog_bad_topic": ("general", "dailydialog", "dialogues_text.txt", "a __eou__ b __eou__\n",
                              "dialogues_topic.txt:1: expected a topic number 1-10, got 'x'"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_files(tmp_path, case):
    group, fmt, name, text, needle = DATA_CASES[case]
    (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "dialogues_topic.txt").write_text("x\n")
    (tmp_path / "good_p.jsonl").write_text(GOOD_PERSONA_LINE * 20)
    (tmp_path / "good_g.jsonl").write_text(GOOD_GENERAL_LINE * 20)
    persona = (name, fmt) if group == "persona" else ("good_p.jsonl", "jsonl")
    general = (name, fmt) if group == "general" else ("good_g.jsonl", "jsonl")
    cfg = write_config(tmp_path, f'[data]\nnum_personas = 1\n'
                                 f'[[data.persona_sources]]\nformat = "{persona[1]}"\npath = "{persona[0]}"\n'
                                 f'[[data.general_sources]]\nformat = "{general[1]}"\npath = "{general[0]}"\n')
    fails_cleanly(["data", "build", "--config", str(cfg)], tmp_path, needle)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- responses files

RESPONSES_CASES = {
    "missing_field": ([response_row(0), {k: v for k, v in response_row(1).items() if k != "utterance"}],
                      "r.jsonl:2: utterance: required key missing"),
    "invalid_json": (json.dumps(response_row(0)) + "\n{oops\n", "r.jsonl:2: not valid JSON"),
    "duplicate_item_id": ([response_row(0), response_row(0)],
                          "r.jsonl:2: item_id: 'persona.p1.p1-0000.prompt_tuning.smollm2-135m' already used on line 1"),
    "bad_item_id": ([response_row(0, item_id="bad id!")],
                    "r.jsonl:1: item_id: expected 1-200 characters of [A-Za-z0-9_.:-], got 'bad id!'"),
    "persona_not_a_list": ([response_row(0, persona="i like cats")], "r.jsonl:1: persona: expected a non-empty list"),
    "line_not_an_object": ("[1, 2]\n", "r.jsonl:1: expected a JSON object, got list"),
    "not_utf8": (b'\xff\xfe{"a": 1}\n', "r.jsonl:1: not valid utf-8 text"),
    "eval_set_unknown": ([response_row(0), response_row(1, eval_set="banana")],
                         "r.jsonl:2: eval_set: expected persona or general, got 'banana'"),
    "empty_file": ("", "r.jsonl: no responses in the file"),
    "missing_file": (None, "r.jsonl: file not found"),
}


def _write_bad_responses(path: Path, content) -> None:
    if content is None:
        return
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        write_responses(path, rows=content)


@pytest.mark.parametrize("verb", ["publish", "preview"])
@pytest.mark.parametrize("case", sorted(RESPONSES_CASES))
def test_bad_responses_file(tmp_path, no_platform, verb, case):
    content, needle = RESPONSES_CASES[case]
    _write_bad_responses(tmp_path / "r.jsonl", content)
    cfg = write_config(tmp_path)
    fails_cleanly([verb, "--config", str(cfg), "--responses", str(tmp_path / "r.jsonl")], tmp_path, needle)
    assert not (tmp_path / "runs").exists()


def test_distinct_bad_responses(tmp_path):
    cfg = write_config(tmp_path)
    fails_cleanly(["distinct", "--config", str(cfg)], tmp_path,
                  f"{tmp_path / 'runs' / 'exp1' / 'responses.jsonl'}: file not found; run 'mturk-eval generate")
    fails_cleanly(["distinct", "--responses", str(tmp_path / "none.jsonl")], tmp_path, "none.jsonl: file not found")
    (tmp_path / "l.jsonl").write_text("[1, 2]\n")
    fails_cleanly(["distinct", "--responses", str(tmp_path / "l.jsonl")], tmp_path,
                  "l.jsonl:1: expected a JSON object, got list")


# ---------------------------------------------------------------------------------------------- HIT/publish options


def fails_after_output(args: list[str], root: Path, needle: str, *, stdin: str | None = None) -> list[str]:
    """Like :func:`fails_cleanly` for a command that prints its plan first: exit 2, the error is the last
    line and the only ``Error:`` line, no traceback, nothing new or changed under ``root``. Returns the lines."""
    before = snapshot(root)
    res = CliRunner().invoke(main, args, input=stdin)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output, res.output
    assert lines[-1].startswith("Error: ") and needle in lines[-1], res.output
    assert sum(line.startswith("Error: ") for line in lines) == 1, res.output
    after = snapshot(root)
    assert sorted(after) == sorted(before), sorted(set(after) ^ set(before))
    assert {k for k in after if after[k] != before[k]} == set()
    assert tmp_leftovers(root) == []
    return lines


def test_publish_live_without_yes_and_no_terminal(tmp_path, no_platform):
    """`echo n | mturk-eval publish --live`: the plan and the cost are shown, then the refusal; the
    platform is never contacted and nothing is written."""
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    for stdin in (None, "y\n", "n\n"):  # CliRunner's stdin is never a terminal, even with input
        lines = fails_after_output(["publish", "--config", str(cfg), "--responses", str(responses), "--live"],
                                   tmp_path, "--live: not running interactively, so give --yes to confirm spending"
                                   " real money; nothing was written or published", stdin=stdin)
        assert lines[0].startswith("target: live; batch main; 2 items in ")
        assert lines[1].startswith("cost of this run: 2 HITs x 5 assignments") and "total $0.60" in lines[1]
        assert len(lines) == 3
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("batch", ["b" * 41, "my batch", "a/b", ""], ids=["too_long", "space", "slash", "empty"])
def test_publish_bad_batch_label(tmp_path, no_platform, batch):
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    fails_cleanly(["publish", "--config", str(cfg), "--responses", str(responses), "--batch", batch], tmp_path,
                  f"--batch: expected 1-40 characters of [A-Za-z0-9_.-], got {batch!r}")


# ---------------------------------------------------------------------------------------------- empty responses

EMPTY_ROWS = [response_row(0), response_row(1, response=""), response_row(2), response_row(3, response="  \n\t"),
              response_row(4)]
EMPTY_IDS = "persona.p1.p1-0001.prompt_tuning.smollm2-135m, persona.p1.p1-0003.prompt_tuning.smollm2-135m"


def test_publish_refuses_empty_responses(tmp_path, no_platform):
    responses = write_responses(tmp_path / "r.jsonl", rows=EMPTY_ROWS)
    cfg = write_config(tmp_path)
    lines = fails_after_output(["publish", "--config", str(cfg), "--responses", str(responses)], tmp_path,
                               f"2 of 5 responses in {responses} are empty: {EMPTY_IDS}; workers would rate a blank"
                               " reply: regenerate or remove them, or give --allow-empty to publish them anyway;"
                               " nothing was written or published")
    assert lines[0] == (f"warning: 2 of 5 responses in {responses} are empty: {EMPTY_IDS} (workers would rate a"
                        " blank reply)")
    assert lines[1].startswith("target: sandbox;") and lines[2].startswith("cost of this run: ")
    assert not (tmp_path / "runs").exists()
    # a dry run warns and says what publish will do
    res = CliRunner().invoke(main, ["publish", "--config", str(cfg), "--responses", str(responses), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("warning: 2 of 5 responses") and "publish will refuse the 2 empty responses unless" \
        " given --allow-empty" in res.output
    assert not (tmp_path / "runs").exists()
    res = CliRunner().invoke(main, ["publish", "--help"])
    assert "--allow-empty" in res.output


def test_publish_allow_empty_publishes_them_with_the_warning(tmp_path, use_platform):
    from mturk_eval.actions import publish as pub

    responses = write_responses(tmp_path / "r.jsonl", rows=EMPTY_ROWS)
    cfg = write_config(tmp_path)
    fake = FakeMTurk()
    use_platform(fake)
    res = CliRunner().invoke(main, ["publish", "--config", str(cfg), "--responses", str(responses), "--allow-empty",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"warning: 2 of 5 responses in {responses} are empty: {EMPTY_IDS}")
    assert "created 5, recovered 0, earlier 0" in res.output
    # a rerun has nothing new to publish: the already published empty responses are not refused again
    res = CliRunner().invoke(main, ["publish", "--config", str(cfg), "--responses", str(responses), "--no-progress"])
    assert res.exit_code == 0 and "nothing to publish" in res.output, res.output


def test_preview_warns_about_empty_responses(tmp_path):
    responses = write_responses(tmp_path / "r.jsonl", rows=EMPTY_ROWS)
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--responses", str(responses)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == (
        f"warning: 2 of 5 responses in {responses} are empty: {EMPTY_IDS} (workers would rate a blank reply;"
        " publish refuses them unless given --allow-empty)")
    many = [response_row(i, response="" if i % 2 else "ok") for i in range(20)]
    write_responses(responses, rows=many)
    res = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--responses", str(responses)])
    assert "10 of 20 responses" in res.output and "and 5 more (workers" in res.output


@pytest.mark.parametrize("verb", ["publish", "preview"])
def test_missing_default_responses_says_how_to_get_them(tmp_path, no_platform, verb):
    cfg = write_config(tmp_path)
    fails_cleanly([verb, "--config", str(cfg)], tmp_path,
                  f"{tmp_path / 'runs' / 'exp1' / 'responses.jsonl'}: file not found (run `mturk-eval generate"
                  f" --config {cfg}` first, or give --responses)")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- unreachable endpoint


def _dead_url() -> str:
    """A loopback URL where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_publish_to_an_unreachable_endpoint(tmp_path):
    url = _dead_url()
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    lines = fails_after_output(["publish", "--config", str(cfg), "--responses", str(responses), "--endpoint-url",
                                url, "--no-progress"], tmp_path,
                               f"Error: {url}: cannot reach the MTurk endpoint (Connection refused; GetAccountBalance,"
                               " 6 tries); check that the server is running and that the URL and the network are"
                               " right, then run the command again")
    assert lines[1].startswith("cost of this run: ") and len(lines) == 3
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("verb, op", [
    (["status"], "GetHIT"), (["collect", "--no-progress"], "ListAssignmentsForHIT"),
    (["review", "--apply"], "ApproveAssignment"), (["expire"], "UpdateExpirationForHIT"),
    (["expire", "--delete"], "GetHIT"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_unreachable_endpoint_for_every_verb(tmp_path, verb, op):
    """A local ledger with a HIT and a collected assignment; the endpoint is gone: one line, exit 2, the
    ledger (and its lock file, there since publish) unchanged."""
    from mturk_eval.actions import publish as pub
    from mturk_eval.ledger import Ledger, ledger_path

    url = _dead_url()
    cfg = make_cfg(tmp_path)
    pub.publish(cfg, write_responses(tmp_path / "r.jsonl", 1), target="local", endpoint_url=url,
                platform=FakeMTurk(), echo=lambda s: None, progress=False)
    with Ledger.open(ledger_path(cfg, "local")) as led:
        hid = led.tasks()[0].task_id
        led.store_submission(submission_id="3ASG1", task_id=hid, rater_id="AW1", status="Submitted", accept_time=1.0,
                             submit_time=2.0, raw_answer="<x/>", scores={0: dict.fromkeys(ASPECTS, 3)}, error=None,
                             simulated=False, attention_passed=None)
    conf = write_config(tmp_path)
    needle = f"{url}: cannot reach the MTurk endpoint (Connection refused; {op}, 6 tries)"
    assert (tmp_path / "runs" / "exp1" / ".lock.local").exists()
    out = fails_cleanly([*verb, "--config", str(conf), "--endpoint-url", url], tmp_path, needle,
                        lock_rewritten=verb[0] != "status")
    if verb == ["status"]:
        assert out.rstrip().endswith("; `mturk-eval status --offline` shows what the ledger knows")
    with Ledger.open(ledger_path(cfg, "local")) as led:
        assert [h.state for h in led.tasks()] == ["created"] and led.submissions()[0].status == "Submitted"


@pytest.mark.parametrize("extra, needle", [
    (["--endpoint-url", "ftp://x"], "--endpoint-url: expected an http:// or https:// URL, got 'ftp://x'"),
    (["--live", "--endpoint-url", "http://127.0.0.1:9"], "--live and --endpoint-url: choose one target"),
    (["--dry-run", "--max-cost", "0.01"], "--max-cost: this run costs $0.60, above the limit $0.01"),
    (["--max-cost", "0.01"], "--max-cost: this run costs $0.60, above the limit $0.01"),
], ids=["endpoint_not_http", "live_and_endpoint", "max_cost_dry_run", "max_cost"])
def test_publish_bad_options(tmp_path, no_platform, extra, needle):
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(main, ["publish", "--config", str(cfg), "--responses", str(responses), *extra])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output
    # --max-cost prints the cost first, then the one-line error as the last line
    assert res.output.strip().splitlines()[-1].startswith("Error: ")
    assert not (tmp_path / "runs").exists()  # no ledger, no lock file, even without --dry-run


def test_preview_bad_options(tmp_path):
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    fails_cleanly(["preview", "--config", str(cfg), "--responses", str(responses), "--item", "nope"], tmp_path,
                  f"--item: 'nope' is not an item_id of {responses}")
    fails_cleanly(["preview", "--config", str(cfg), "--responses", str(responses), "--count", "0"], tmp_path,
                  "--count: expected an integer >= 1, got 0")


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_preview_port_out_of_range(tmp_path, port):
    """Click's range check: its usage block and exit 2, before any page is written (no OverflowError)."""
    responses = write_responses(tmp_path / "r.jsonl", 2)
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(main, ["preview", "--config", str(cfg), "--responses", str(responses), "--serve",
                                    "--port", port])
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit), res.exception
    assert f"Invalid value for '--port': {port} is not in the range 0<=x<=65535." in res.output
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- rating files


@pytest.fixture
def ratings(tmp_path):
    """A good ratings.csv and a report already written from it (a failed run must keep it)."""
    rows = make_rows(n_prompts=4, seed=2)
    write_ratings_csv(tmp_path / "ratings.csv", rows)
    write_jsonl(tmp_path / "responses.jsonl", responses_for(rows))
    res = CliRunner().invoke(main, ["report", "--ratings", str(tmp_path / "ratings.csv"), "--out",
                                    str(tmp_path / "rep"), "--no-plots", "-q"])
    assert res.exit_code == 0, res.output
    return tmp_path, rows


def _bad_ratings(tmp_path: Path, rows, case: str) -> Path:
    rows = copy.deepcopy(rows)
    p = tmp_path / "bad.csv"
    if case == "score_6":
        rows[3]["score"] = 6
    elif case == "unknown_aspect":
        rows[3]["aspect"] = "humour"
    elif case == "empty_worker":
        rows[3]["worker_id"] = ""
    elif case == "missing_column":
        p.write_text("item_id,eval_set,method,model,worker_id,score\ni1,persona,m,t,AW1,4\n")
        return p
    elif case == "empty_file":
        p.write_text("")
        return p
    elif case == "jsonl_not_json":
        p = tmp_path / "bad.jsonl"
        p.write_text("{not json\n")
        return p
    write_ratings_csv(p, rows)
    return p


RATINGS_CASES = {
    "score_6": "bad.csv:5: score: expected an integer from 1 to 5, got '6'",
    "unknown_aspect": "bad.csv:5: aspect: expected one of fluency, engagingness, relevance, persona, got 'humour'",
    "empty_worker": "bad.csv:5: worker_id: expected a value, got an empty cell",
    "missing_column": "bad.csv:1: aspect: expected the columns item_id, eval_set, method, model, worker_id, aspect,"
                      " score, missing aspect",
    "empty_file": "bad.csv:1: header: expected the columns item_id, eval_set, method, model, worker_id, aspect, score,"
                  " got an empty file",
    "jsonl_not_json": "bad.jsonl:1: not valid JSON",
}


@pytest.mark.parametrize("case", sorted(RATINGS_CASES))
def test_bad_ratings_file(ratings, case):
    tmp_path, rows = ratings
    bad = _bad_ratings(tmp_path, rows, case)
    fails_cleanly(["report", "--ratings", str(bad), "--out", str(tmp_path / "rep"), "--no-plots", "-q"], tmp_path,
                  RATINGS_CASES[case])


def test_bad_responses_beside_ratings(ratings):
    tmp_path, _ = ratings
    (tmp_path / "badresp.jsonl").write_text('{"item_id": "a"}\n')
    fails_cleanly(["report", "--ratings", str(tmp_path / "ratings.csv"), "--responses", str(tmp_path / "badresp.jsonl"),
                   "--out", str(tmp_path / "rep"), "--no-plots", "-q"], tmp_path,
                  "badresp.jsonl:1: eval_set: expected a value, got no such key")


def test_report_both_sources_and_no_out(ratings):
    tmp_path, _ = ratings
    r = str(tmp_path / "ratings.csv")
    fails_cleanly(["report", "--ratings", r, "--batch-csv", r, "--out", str(tmp_path / "rep")], tmp_path,
                  "--ratings and --batch-csv: expected one ratings source, got both")
    fails_cleanly(["report", "--ratings", r], tmp_path,
                  "--out: expected an output directory when no --config is given, got none")


# ---------------------------------------------------------------------------------------------- MTurk batch CSVs

BATCH_BASE = {"HITId": "H", "AssignmentId": "A", "WorkerId": "AW1", "AssignmentStatus": "Approved",
              "Input.item_id": "x", "Input.eval_set": "persona", "Input.method": "m", "Input.model": "t",
              **{f"Answer.{a}": "3" for a in ASPECTS}}

BATCH_CASES = {
    "missing_fixed_column": ("HITId,WorkerId,AssignmentStatus,Input.item_id,Answer.fluency\nH,AW,Approved,x,3\n",
                             "b.csv:1: header: expected the batch results columns AssignmentId, got HITId, WorkerId"),
    "duplicate_column": ("HITId,AssignmentId,WorkerId,AssignmentStatus,HITId\n",
                         "b.csv:1: header: column 'HITId' appears twice"),
    "short_row": ("HITId,AssignmentId,WorkerId,AssignmentStatus\nH,A,AW,Approved\nH,A2,AW\n",
                  "b.csv:3: row: expected 4 cells as in the header, got 3"),
    "score_9": ({**BATCH_BASE, "Answer.fluency": "9"}, "b.csv:2: score: expected an integer from 1 to 5, got '9'"),
    "empty_answer": ({**BATCH_BASE, "Answer.fluency": ""},
                     "b.csv:2: Answer.fluency: expected a score from 1 to 5, got an empty answer"),
    "missing_answer_column": ({k: v for k, v in BATCH_BASE.items() if k != "Answer.persona"},
                              "b.csv:1: Answer.persona: expected an answer column for every aspect"),
    "no_item_column": ({k: v for k, v in BATCH_BASE.items() if k != "Input.item_id"},
                       "b.csv:1: Input.item_id: expected Input.item_id or Input.i0_item_id columns"),
    "item_fields_unknown": ({k: v for k, v in BATCH_BASE.items() if k != "Input.eval_set"},
                            "b.csv:2: Input.eval_set: expected the item's eval_set (an Input column or the responses"
                            " file), got none for item 'x'"),
    "task_answers_not_json": ({**{k: v for k, v in BATCH_BASE.items() if not k.startswith("Answer.")},
                               "Answer.taskAnswers": "[{oops"}, "b.csv:2: Answer.taskAnswers: expected a JSON array"),
    "not_utf8": (b"HITId,AssignmentId\n\xff\xfe\n", "b.csv:2: not valid utf-8-sig text"),
    "missing_file": (None, "b.csv: file not found"),
}


@pytest.mark.parametrize("case", sorted(BATCH_CASES))
def test_bad_batch_csv(ratings, case):
    tmp_path, _ = ratings
    content, needle = BATCH_CASES[case]
    p = tmp_path / "b.csv"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif isinstance(content, str):
        p.write_text(content, encoding="utf-8")
    elif content is not None:
        write_batch_csv(p, [content])
    fails_cleanly(["report", "--batch-csv", str(p), "--out", str(tmp_path / "rep"), "--no-plots", "-q"], tmp_path,
                  needle)


# ---------------------------------------------------------------------------------------------- ledger / review / collect


@pytest.fixture
def ledger(tmp_path):
    """A sandbox-target ledger with 2 published items (through an in-memory platform) and its config."""
    from mturk_eval.actions import publish as pub

    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 2)
    pub.publish(cfg, responses, platform=FakeMTurk(), echo=lambda s: None, progress=False)
    return tmp_path, write_config(tmp_path)


@pytest.mark.parametrize("opts, needle", [
    (["--bonus", "0.10"], "--bonus-reason: workers see it with the bonus; give one"),
    (["--bonus", "ten", "--bonus-reason", "thanks"], "--bonus: expected dollars like 0.10, got 'ten'"),
    (["--bonus", "-1", "--bonus-reason", "thanks"], "--bonus: expected dollars like 0.10, got '-1'"),
    (["--block", "bob"], "--block: expected a worker id like A1B2C3..., got 'bob'"),
    (["--reject-failed-attention", "--feedback", " "], "--feedback: a rejected worker must be told why; give a reason"),
], ids=["bonus_without_reason", "bonus_not_dollars", "bonus_negative", "block_bad_worker_id", "blank_feedback"])
def test_review_bad_options(ledger, no_platform, opts, needle):
    tmp_path, cfg = ledger
    fails_cleanly(["review", "--config", str(cfg), *opts], tmp_path, needle)
    fails_cleanly(["review", "--config", str(cfg), "--apply", *opts], tmp_path, needle)


def test_publish_changed_item_is_refused(ledger, no_platform):
    tmp_path, cfg = ledger
    changed = write_responses(tmp_path / "changed.jsonl", rows=[response_row(0, response="another reply")])
    fails_cleanly(["publish", "--config", str(cfg), "--responses", str(changed)], tmp_path,
                  "changed.jsonl: item_id: 'persona.p1.p1-0000.prompt_tuning.smollm2-135m' differs from the item"
                  " already in the ledger")


def test_unreadable_or_foreign_ledger(ledger, no_platform):
    tmp_path, cfg = ledger
    led = tmp_path / "runs" / "exp1" / "ledger.sandbox.sqlite"
    good = led.read_bytes()
    led.write_bytes(b"not sqlite at all")
    for verb in (["status", "--offline"], ["collect"], ["review"], ["expire"]):
        fails_cleanly([*verb, "--config", str(cfg)], tmp_path,
                      "ledger.sandbox.sqlite: not a readable ledger (file is not a database)")
    led.write_bytes(good)
    other = tmp_path / "other" / "exp.toml"
    other.parent.mkdir()
    other.write_text(f'[experiment]\nname = "other"\nruns_dir = "{tmp_path / "runs2"}"\n')
    (tmp_path / "runs2" / "other").mkdir(parents=True)
    (tmp_path / "runs2" / "other" / "ledger.sandbox.sqlite").write_bytes(good)
    for verb in (["status", "--offline"], ["collect"], ["review"], ["expire"], ["publish", "--dry-run"],
                 ["publish"]):
        extra = ["--responses", str(tmp_path / "r.jsonl")] if verb[0] == "publish" else []
        fails_cleanly([*verb, "--config", str(other), *extra], tmp_path,
                      "ledger.sandbox.sqlite: ledger belongs to experiment 'exp1', not 'other'")


def test_a_refused_ledger_is_closed(ledger):
    """open_ledger closes what it refuses: no -wal/-shm sidecar stays while the error is still held."""
    from mturk_eval.actions.common import open_ledger
    from mturk_eval.errors import UserError

    tmp_path, _ = ledger
    run = tmp_path / "runs" / "exp1"
    (run / "ledger.local.sqlite").write_bytes((run / "ledger.sandbox.sqlite").read_bytes())
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="ledger belongs to target 'sandbox', not 'local'") as err:
        open_ledger(make_cfg(tmp_path), "local")
    assert err.value is not None  # the traceback (and its frames) are still alive here
    assert snapshot(tmp_path) == before, sorted(set(snapshot(tmp_path)) ^ set(before))


@pytest.mark.parametrize("verb", [["status", "--offline"], ["status"], ["collect"], ["review"],
                                  ["review", "--apply"], ["expire"], ["expire", "--dry-run"],
                                  ["collect", "--endpoint-url", "http://127.0.0.1:9"]], ids=" ".join)
def test_no_ledger_yet_leaves_nothing(tmp_path, no_platform, verb):
    """Refused before the lock: no ``runs/<exp>/`` folder, no ``.lock.<target>`` file."""
    cfg = write_config(tmp_path)
    name = "local" if "--endpoint-url" in verb else "sandbox"
    fails_cleanly([*verb, "--config", str(cfg)], tmp_path,
                  f"{tmp_path / 'runs' / 'exp1' / f'ledger.{name}.sqlite'}: no ledger here yet (nothing published to this target: run `mturk-eval publish` first)")
    assert not (tmp_path / "runs").exists()


def test_review_options_are_checked_before_the_ledger(tmp_path, no_platform):
    cfg = write_config(tmp_path)
    fails_cleanly(["review", "--config", str(cfg), "--bonus", "0.10"], tmp_path,
                  "--bonus-reason: workers see it with the bonus; give one")
    fails_cleanly(["review", "--config", str(cfg), "--block", "bob"], tmp_path,
                  "--block: expected a worker id like A1B2C3..., got 'bob'")
    assert not (tmp_path / "runs").exists()


def test_no_ledger_yet(tmp_path, no_platform):
    cfg = write_config(tmp_path)
    fails_cleanly(["status", "--config", str(cfg), "--offline"], tmp_path,
                  "ledger.sandbox.sqlite: no ledger here yet (nothing published to this target: run `mturk-eval publish` first)")
    fails_cleanly(["report", "--config", str(cfg)], tmp_path,
                  "expected a ledger (ledger.<target>.sqlite), got none (nothing published yet); run `mturk-eval publish`")


# ---------------------------------------------------------------------------------------------- sandbox


def test_sandbox_state_that_is_not_sqlite(tmp_path):
    state = tmp_path / "s.txt"
    state.write_text("garbage\n")
    fails_cleanly(["sandbox", "serve", "--state", str(state), "--port", "0", "--quiet"], tmp_path,
                  f"{state}: not a sandbox state database (SQLite) (file is not a database)")
    assert state.read_text() == "garbage\n"
    (tmp_path / "f").write_text("x")
    fails_cleanly(["sandbox", "serve", "--state", str(tmp_path / "f" / "s.sqlite"), "--port", "0", "--quiet"],
                  tmp_path, f"{tmp_path / 'f' / 's.sqlite'}: cannot create its folder {tmp_path / 'f'} (")


# ---------------------------------------------------------------------------------------------- model / generation


def test_generate_with_a_missing_model_path_downloads_nothing(tmp_path, monkeypatch):
    cfg = tmp_path / "g.toml"
    cfg.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")))
    # the data is built first, so the failing generate below has nothing legitimate to add
    assert CliRunner().invoke(main, ["data", "build", "--config", str(cfg)]).exit_code == 0

    def no_network(self, *a, **k):
        raise AssertionError("a missing model must not be looked for on the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    fails_cleanly(["generate", "--config", str(cfg), "--model", "/nonexistent/path", "--quiet"], tmp_path,
                  "model /nonexistent/path: no such directory")
    (tmp_path / "empty").mkdir()
    fails_cleanly(["generate", "--config", str(cfg), "--model", str(tmp_path / "empty"), "--quiet"], tmp_path,
                  f"{tmp_path / 'empty'} has no config.json; expected a transformers model directory")
    assert not (tmp_path / "runs" / "tiny" / "responses.jsonl").exists()
    assert not (tmp_path / "runs" / "tiny" / "models").exists()


def test_generate_with_a_missing_model_builds_nothing_first(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(tiny_config_text(runs_dir=str(tmp_path / "runs")))
    fails_cleanly(["generate", "--config", str(cfg), "--model", "/nonexistent/path", "--quiet"], tmp_path,
                  "or one of the built-ins: smollm2-135m, tiny-random")
    assert not (tmp_path / "runs").exists()  # the model is checked before the data is built


# ---------------------------------------------------------------------------------------------- no *.tmp left anywhere


def test_every_failing_case_leaves_no_tmp_files_in_the_runs_folder(tmp_path, monkeypatch):
    """One experiment folder with built data, a ledger and a report; then one failing command of each
    kind, all against the same runs folder: no ``*.tmp`` file or folder is left by any of them."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    cfg_text = tiny_config_text(name="exp1", runs_dir=str(runs))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(cfg_text)
    assert CliRunner().invoke(main, ["data", "build", "--config", str(cfg)]).exit_code == 0
    from mturk_eval.actions import publish as pub
    from mturk_eval.config import load_config
    write_responses(tmp_path / "r.jsonl", 2)
    pub.publish(load_config(cfg), tmp_path / "r.jsonl", platform=FakeMTurk(), echo=lambda s: None, progress=False)
    rows = make_rows(n_prompts=4, seed=2)
    write_ratings_csv(tmp_path / "ratings.csv", rows)
    assert CliRunner().invoke(main, ["report", "--config", str(cfg), "--ratings", str(tmp_path / "ratings.csv"),
                                     "--no-plots", "-q"]).exit_code == 0
    assert tmp_leftovers(runs) == []
    files_before = snapshot(runs)

    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text(cfg_text + "\n[report]\nalpha = 1.5\n")
    for name, (content, _) in RESPONSES_CASES.items():
        _write_bad_responses(tmp_path / f"resp_{name}.jsonl", content)
    for case in RATINGS_CASES:
        p = _bad_ratings(tmp_path, rows, case)
        p.rename(tmp_path / f"rat_{case}{p.suffix}")
    (tmp_path / "personas_bad.jsonl").write_text('{"persona": ["a."], "utterance": "u"}\n')
    data_bad = tmp_path / "data_bad.toml"
    persona_path = re.search(r'path = "([^"]*personas\.jsonl)"', cfg_text).group(1)
    data_bad.write_text(cfg_text.replace(persona_path, str(tmp_path / "personas_bad.jsonl")))
    commands = [
        ["data", "build", "--config", str(data_bad), "--force"],
        ["generate", "--config", str(cfg), "--model", "/nonexistent/path", "--quiet"],
        ["report", "--config", str(bad_cfg), "--ratings", str(tmp_path / "ratings.csv")],
        ["review", "--config", str(cfg), "--bonus", "0.10"],
        ["publish", "--config", str(cfg), "--responses", str(tmp_path / "r.jsonl"), "--live"],
        *[[verb, "--config", str(cfg), "--responses", str(tmp_path / f"resp_{name}.jsonl")]
          for verb in ("publish", "preview") for name in RESPONSES_CASES],
        *[["report", "--config", str(cfg), "--ratings", str(p)] for p in sorted(tmp_path.glob("rat_*"))],
    ]
    for args in commands:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        assert tmp_leftovers(runs) == [], args
    assert snapshot(runs) == files_before
