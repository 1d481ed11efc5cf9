"""`mturk-eval participants export/delete/new-key`: access and deletion requests by real id or
pseudonym, what deletion removes (down to the SQLite file's bytes), what it says remains, and that a
later collect does not bring the data back."""
from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from helpers.mturk import FakeMTurk, make_cfg, qfa_xml, rating_fields, write_responses
from mturk_eval.actions import collect as col
from mturk_eval.actions import publish as pub
from mturk_eval.cli import main
from mturk_eval.ledger import Ledger, ledger_path
from mturk_eval.platforms.crowd_platform import Submission
from mturk_eval.privacy import Pseudonymiser, key_path

GOOD = {"fluency": 4, "engagingness": 3, "relevance": 5, "persona": 2}
GONE = "AGONE1234567"   # the participant who asks for deletion
STAYS = "ASTAYS765432"


class Platform(FakeMTurk):
    def __init__(self, subs):
        super().__init__()
        self.subs = subs

    def list_submissions(self, task_id):
        return iter([s for s in self.subs if s.task_id == task_id])


@pytest.fixture
def study(tmp_path):
    """An experiment with 2 HITs, each rated by GONE and STAYS (GONE also typed a comment)."""
    cfg = make_cfg(tmp_path)
    pub.publish(cfg, write_responses(tmp_path / "r.jsonl", 2), platform=FakeMTurk(), echo=lambda s: None,
                progress=False)
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        hits = [h.task_id for h in led.tasks()]
    subs = []
    for n, h in enumerate(hits):
        for w in (GONE, STAYS):
            fields = rating_fields(GOOD) | ({"comments": "I am Jane from Leeds"} if w == GONE else {})
            subs.append(Submission(f"3A{w}{n}", h, w, "Submitted", fields, qfa_xml(fields), 1000.0, 1042.0))
    plat = Platform(subs)
    col.collect(cfg, platform=plat, progress=False)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n', encoding="utf-8")
    return cfg, conf, plat


def _cli(*args):
    return CliRunner().invoke(main, ["participants", *args])


def _approve_all(cfg):
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        for a in led.submissions():
            led.set_submission_status(a.submission_id, "Approved", "approved")


def test_export_by_real_id_and_by_pseudonym(study, tmp_path):
    cfg, conf, _ = study
    pseudonym = Pseudonymiser.for_run(cfg.run_dir).rater(GONE)
    res = _cli("export", "--config", str(conf), GONE)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["participant"] == {"rater_id": GONE, "pseudonym": pseudonym}
    (held,) = data["ledgers"]
    assert [s["submission_id"] for s in held["submissions"]] == [f"3A{GONE}0", f"3A{GONE}1"]
    sub = held["submissions"][0]
    assert sub["answers"]["comments"] == "I am Jane from Leeds" and len(sub["ratings"]) == 4
    assert sub["status"] == "Submitted" and sub["submitted_at"].startswith("1970-01-01T00:17:22")
    assert STAYS not in res.output
    out = tmp_path / "access.json"
    res = _cli("export", "--config", str(conf), pseudonym, "--out", str(out))
    assert res.exit_code == 0 and f"wrote {out}: 2 submission(s) of {pseudonym}" in res.output
    assert json.loads(out.read_text())["ledgers"] == data["ledgers"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # personal data: owner only


def test_delete_refuses_unreviewed_work_then_removes_everything(study):
    cfg, conf, plat = study
    res = _cli("delete", "--config", str(conf), GONE)
    assert res.exit_code == 2 and "2 submission(s) not yet reviewed" in res.output
    assert "nothing deleted" in res.output and len(res.output.strip().splitlines()) == 1
    _approve_all(cfg)
    # A report written before the deletion: it shows the pseudonym and includes the ratings.
    from mturk_eval.analysis.report import build_report

    build_report(cfg, plots=False, progress=False)
    # GONE typed a comment: the report flags the field as possibly identifying and leaves the text out.
    md = (cfg.run_dir / "report" / "report.md").read_text()
    assert "## Participants' privacy" in md and "POSSIBLY IDENTIFYING: free-text answer field(s) comments" in md
    assert "comments: 2 submission(s)" in md and "Jane" not in md
    data = json.loads((cfg.run_dir / "report" / "report.json").read_text())
    assert data["privacy"]["free_text_answers"] == {"comments": 2} and data["privacy"]["free_text_fields"] == []
    pseudonym = Pseudonymiser.for_run(cfg.run_dir).rater(GONE)
    import pandas as pd  # a Parquet export (compressed: found through its rater column)

    pd.DataFrame({"worker_id": [pseudonym, "r-aaaaaaaaaa"]}).to_parquet(cfg.run_dir / "ratings.parquet")
    res = _cli("delete", "--config", str(conf), pseudonym)
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.startswith(f"deleted {pseudonym}: 2 submission(s) with 8 rating(s), 0 bonus record(s), 0 block(s)")
    assert "reports written before now still include their ratings" in out and str(cfg.run_dir / "report") in out
    assert f"files that still show the pseudonym {pseudonym}: " in out and "report.json" in out
    assert "ratings.parquet" in out and "exports written outside" in out
    led_file = ledger_path(cfg, "sandbox")
    with Ledger.open(led_file) as led:
        assert {r["worker_id"] for r in led.ratings()} == {STAYS}
        assert len(led.submissions()) == 2
    # The real id and the typed comment are gone from the database file itself, not just unlinked rows.
    raw = b"".join(p.read_bytes() for p in led_file.parent.glob("ledger.sandbox.sqlite*"))
    assert GONE.encode() not in raw and b"Jane from Leeds" not in raw
    # The platform still lists the submissions: collect must not store them again.
    r = col.collect(cfg, platform=plat, progress=False)
    assert (r.new, r.deleted) == (0, 2)
    with Ledger.open(led_file) as led:
        assert {a.rater_id for a in led.submissions()} == {STAYS}
    # Asked again: the participant is unknown now.
    res = _cli("delete", "--config", str(conf), GONE)
    assert res.exit_code == 2 and "no participant with this rater id" in res.output


def test_force_deletes_unreviewed_work_with_a_warning(study):
    cfg, conf, _ = study
    res = _cli("delete", "--config", str(conf), GONE, "--force")
    assert res.exit_code == 0 and "2 submission(s) were deleted before review (--force)" in res.output


@pytest.mark.parametrize("who", ["ANOBODY00000", "r-aaaaaaaaaa"])
def test_unknown_participant_is_one_line_exit_2(study, who):
    _, conf, _ = study
    for verb in ("delete", "export"):
        res = _cli(verb, "--config", str(conf), who)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
        assert f"Error: {who}: no participant with this" in res.output


def test_lost_key_refuses_exports_and_new_key_makes_one_on_purpose(study, tmp_path):
    cfg, conf, plat = study
    from mturk_eval.analysis.report import build_report

    _approve_all(cfg)
    build_report(cfg, plots=False, progress=False)
    before = (cfg.run_dir / "report" / "report.md").read_bytes()
    key_path(cfg.run_dir).unlink()
    res = CliRunner().invoke(main, ["report", "--config", str(conf), "-q", "--no-plots"])
    assert res.exit_code == 2 and "pseudonym.key: missing" in res.output and "restore it from your backup" in res.output
    # (report first tries to collect; that warning aside, the refusal is one line)
    assert len([x for x in res.output.splitlines() if x.startswith("Error:")]) == 1 and "Traceback" not in res.output
    assert not key_path(cfg.run_dir).exists()
    assert (cfg.run_dir / "report" / "report.md").read_bytes() == before  # the old report stays as it was
    # collect --export-csv is refused before anything is collected or written.
    from mturk_eval.errors import UserError

    plat.subs.append(Submission("3ANEW", plat.subs[0].task_id, "ANEWRATER001", "Submitted", rating_fields(GOOD),
                                qfa_xml(rating_fields(GOOD)), 1000.0, 1042.0))
    with pytest.raises(UserError, match="pseudonym.key: missing"):
        col.collect(cfg, platform=plat, export_csv=tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()
    with Ledger.open(ledger_path(cfg, "sandbox")) as led:
        assert "3ANEW" not in {a.submission_id for a in led.submissions()}
    # Looking a participant up by pseudonym needs the key; by real id it does not.
    assert _cli("export", "--config", str(conf), "r-aaaaaaaaaa").exit_code == 2
    res = _cli("export", "--config", str(conf), STAYS)
    assert res.exit_code == 0 and json.loads(res.output)["participant"]["pseudonym"] is None
    res = _cli("new-key", "--config", str(conf))
    assert res.exit_code == 0 and "new pseudonym key" in res.output
    assert stat.S_IMODE(key_path(cfg.run_dir).stat().st_mode) == 0o600
    assert CliRunner().invoke(main, ["report", "--config", str(conf), "-q", "--no-plots"]).exit_code == 0
    res = _cli("new-key", "--config", str(conf))
    assert res.exit_code == 2 and "a key already exists" in res.output


def test_site_store_participant_export_and_delete(tmp_path):
    """A links rater known only to the rating site (consent recorded, one site submission): found by
    pseudonym, exported with the consent record, deleted from the site store down to the file's bytes."""
    from helpers.site import make_items
    from mturk_eval.site.store import SiteStore, site_store_path

    cfg = make_cfg(tmp_path)
    conf = tmp_path / "exp.toml"
    conf.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n', encoding="utf-8")
    path = site_store_path(cfg.run_dir)
    with SiteStore.open(path) as store:
        items = make_items(2)  # one task of two items, two places
        store.add_batch("b1", items, [{"task_key": "b1/0", "item_ids": [i["item_id"] for i in items]}],
                        k=2, reservation_s=600)
        store.record_consent("links", "r0007", "agree", "ab" * 32)
        a = store.allocate("links", "r0007")
        store.submit(a.assignment_id, {f"i{k}_{x}": "3" for k in range(2) for x in GOOD} | {"comments": "Jane here"})
        store.record_consent("links", "r0008", "agree", "ab" * 32)
    pseudonym = Pseudonymiser.for_run(cfg.run_dir).rater("r0007")
    res = _cli("export", "--config", str(conf), pseudonym)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ledgers"] == [] and data["participant"]["rater_id"] == "r0007"
    (site,) = data["rating_site"]
    assert site["consent"]["decision"] == "agree" and site["assignments"][0]["answers"]["comments"] == "Jane here"
    res = _cli("delete", "--config", str(conf), pseudonym)
    assert res.exit_code == 0, res.output
    assert f"deleted {pseudonym} from the rating site's store: " in res.output and "1 assignments" in res.output
    raw = b"".join(p.read_bytes() for p in cfg.run_dir.glob("site.sqlite*"))
    assert b"r0007" not in raw and b"Jane here" not in raw and b"r0008" in raw
    with SiteStore.open(path) as store:
        assert store.consent("links", "r0007") is None and store.consent("links", "r0008") is not None
