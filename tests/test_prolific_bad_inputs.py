"""Bad input on --platform prolific: each is one line, exit 2, no traceback, and nothing sent (no call
that changes anything on Prolific, no ledger or site file written). Rows in docs/bad-inputs.md."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mturk_eval.cli import main
from mturk_eval.emulators.prolific.participants import simulate_participants, store_items
from tests.helpers.prolific import TOKEN, emulator, load, site_for, write_config, write_responses

WRITES = {"create-study", "update-study", "transition-study", "delete-study", "create-participant-group",
          "add-to-participant-group", "transition-submission", "bulk-approve-submissions", "create-bonus-payments",
          "pay-bonus-payments"}
LONG = "Your ratings did not follow the instructions of the task: every reply was given the same score, which the" \
       " instructions asked you not to do."


@pytest.fixture
def world(tmp_path):
    cfg_path = write_config(tmp_path)
    responses = write_responses(tmp_path, 4)
    with emulator() as emu:
        yield tmp_path, cfg_path, responses, emu


def refused(args: list[str], env: dict | None = None, says: str = "") -> str:
    r = CliRunner().invoke(main, args, env={"PROLIFIC_TOKEN": None, **(env or {})})
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.output, r.output
    assert says in lines[0], lines[0]
    return lines[0]


def nothing_sent(emu, tmp_path) -> None:
    assert not WRITES & set(emu.app.calls), emu.app.calls
    runs = tmp_path / "runs" / "pro"
    assert not (runs / "ledger.prolific.sqlite").exists() and not (runs / "ledger.prolific-emulator.sqlite").exists()
    assert not (runs / "site.sqlite").exists()


def live(cfg_path, responses, emu, *more: str) -> list[str]:
    return ["publish", "--config", str(cfg_path), "--platform", "prolific", "--live", "--api-url", emu.url,
            "--responses", str(responses), "--yes", *more]


@pytest.mark.parametrize("token, says", [
    (None, "PROLIFIC_TOKEN is not set"),
    ("not a token at all", "does not look like a Prolific API token"),
    ("Token " + TOKEN, "starts with 'Token '"),
])
def test_no_or_malformed_token(world, token, says):
    tmp_path, cfg_path, responses, emu = world
    line = refused(live(cfg_path, responses, emu, "--public-url", "https://rate.example"),
                   {"PROLIFIC_TOKEN": token}, says)
    assert token is None or token.split()[-1] not in line
    nothing_sent(emu, tmp_path)
    assert emu.app.calls == {}


def test_site_url_that_is_not_https_for_a_real_study(world):
    tmp_path, cfg_path, responses, emu = world
    refused(live(cfg_path, responses, emu, "--public-url", "http://rate.example"), {"PROLIFIC_TOKEN": TOKEN},
            "is not an https:// address")
    nothing_sent(emu, tmp_path)
    assert emu.app.calls == {}


def test_reward_under_the_minimum_hourly_rate(world):
    tmp_path, cfg_path, responses, emu = world
    low = write_config(tmp_path, reward="0.40")  # 5 minutes: £4.80/h
    refused(["publish", "--config", str(low), "--platform", "prolific", "--sandbox", "--api-url", emu.url,
             "--responses", str(responses), "--public-url", "http://127.0.0.1:1"], says="below the minimum £6.00/h")
    nothing_sent(emu, tmp_path)
    assert emu.app.calls == {}


def test_unknown_filter_id(world):
    tmp_path, cfg_path, responses, emu = world
    bad = write_config(tmp_path, extra='[[platform.prolific.filters]]\nfilter_id = "favourite-colour"\nselected_values = ["1"]')
    refused(["publish", "--config", str(bad), "--platform", "prolific", "--sandbox", "--api-url", emu.url,
             "--responses", str(responses), "--public-url", "http://127.0.0.1:1"],
            says="unknown filter id 'favourite-colour'")
    nothing_sent(emu, tmp_path)
    assert "get-filters" in emu.app.calls  # read to check the id, nothing else


def test_malformed_filter_and_rejection_template_in_the_config(world):
    tmp_path, cfg_path, responses, emu = world
    bad = write_config(tmp_path, extra='[[platform.prolific.filters]]\nfilter_id = "age"')
    refused(["status", "--config", str(bad), "--platform", "prolific", "--api-url", emu.url],
            says="give exactly one of selected_values and selected_range")
    bad = write_config(tmp_path, extra='[platform.prolific.rejections.quick]\ncategory = "LAZY"')
    refused(["status", "--config", str(bad), "--platform", "prolific", "--api-url", emu.url],
            says="rejection category 'LAZY' is not one of Prolific's")
    bad = write_config(tmp_path, extra='[platform.prolific.rejections.quick]\nmessage = "Too fast."')
    refused(["status", "--config", str(bad), "--platform", "prolific", "--api-url", emu.url],
            says="has 9 characters; Prolific needs at least 100")
    assert emu.app.calls == {}


def test_rejections_are_checked_before_anything_is_sent(tmp_path):
    cfg_path = write_config(tmp_path, attention=0.5)
    cfg = load(tmp_path, attention=0.5)
    responses = write_responses(tmp_path, 2)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url]
        assert CliRunner().invoke(main, ["publish", *base, "--responses", str(responses), "--public-url",
                                         site.url]).exit_code == 0
        simulate_participants(emu.url, emu.state()["studies"][0]["id"], 4, seed=1, items_of=store_items(site.store))
        assert CliRunner().invoke(main, ["collect", *base]).exit_code == 0
        before = dict(emu.app.calls)
        refused(["review", *base, "--apply", "--reject-failed-attention", "--rejection-message", "Wrong."],
                says="has 6 characters; Prolific needs at least 100")
        refused(["review", *base, "--apply", "--reject-failed-attention", "--rejection-category", "LAZY",
                 "--rejection-message", LONG], says="rejection category 'LAZY' is not one of Prolific's")
        refused(["review", *base, "--apply", "--reject-failed-attention", "--rejection", "nope"],
                says="no template 'nope'")
        refused(["review", *base, "--apply", "--bonus", "-1"], says="--bonus: expected an amount")
        refused(["review", *base, "--apply", "--block", "A1B2C3"], says="--block: expected a Prolific participant id")
        assert emu.app.calls == before
        assert {s["status"] for s in emu.state()["submissions"]} == {"AWAITING REVIEW"}


def test_fewer_places_than_published(tmp_path):
    cfg_path = write_config(tmp_path, k=3)
    cfg = load(tmp_path, k=3)
    responses = write_responses(tmp_path, 4)
    with emulator() as emu, site_for(cfg) as site:
        base = ["--config", str(cfg_path), "--platform", "prolific", "--sandbox", "--api-url", emu.url,
                "--responses", str(responses), "--public-url", site.url]
        assert CliRunner().invoke(main, ["publish", *base]).exit_code == 0
        before = dict(emu.app.calls)
        fewer = write_config(tmp_path, k=2)
        refused(["publish", "--config", str(fewer), *base[2:]], says="Prolific only lets places grow")
        assert not WRITES & {k for k, v in emu.app.calls.items() if v != before.get(k)}
        assert emu.state()["studies"][0]["total_available_places"] == 6


def test_options_of_the_other_platform_are_refused(world):
    tmp_path, cfg_path, responses, emu = world
    refused(["expire", "--config", str(cfg_path), "--platform", "prolific", "--delete"], says="--delete: not an option")
    refused(["publish", "--config", str(cfg_path), "--api-url", emu.url, "--responses", str(responses)],
            says="--api-url: not an option")
