"""Each platform names its units in the workflow verbs' messages (``CrowdPlatform.vocabulary``): MTurk's
HITs, assignments and workers (word for word as before: tests/test_collect.py and others assert them),
the invite-links platform's tasks, submissions and raters."""
from __future__ import annotations

import re

from click.testing import CliRunner

from helpers.mturk import write_responses
from mturk_eval.cli import main
from mturk_eval.platforms.crowd_platform import CrowdPlatform, UnitNames
from mturk_eval.platforms.links.links_platform import LinksPlatform
from mturk_eval.platforms.mturk.mturk_platform import MTurkPlatform

MTURK_WORDS = re.compile(r"\bHITs?\b|\bassignments?\b|\bworkers?\b")


def test_each_platform_has_its_words():
    assert MTurkPlatform.vocabulary == UnitNames("HIT", "HITs", "assignment", "assignments", "worker")
    assert LinksPlatform.vocabulary == CrowdPlatform.vocabulary == UnitNames()
    assert MTurkPlatform.estimate_cost(2, 3, "0.05", _hit()).describe().startswith(
        "2 HITs x 3 assignments = 6 assignments")
    assert LinksPlatform.estimate_cost(2, 3, "0.05", _hit()).describe().startswith("2 tasks x 3 submissions")


def _hit():
    from mturk_eval.config import HITConfig

    return HITConfig()


def test_links_verbs_speak_of_tasks_and_submissions(tmp_path):
    cfg_path = tmp_path / "exp.toml"
    cfg_path.write_text(f"""[experiment]
name = "words1"
runs_dir = "{tmp_path / 'runs'}"

[hit]
assignments_per_hit = 2
items_per_hit = 2
attention_check_rate = 0.0

[site]
public_url = "https://rate.example.org"
""")
    responses = write_responses(tmp_path / "r.jsonl", 4)
    run = CliRunner()
    base = ["--config", str(cfg_path), "--platform", "links"]
    outputs = {}
    for verb, extra in [("publish", ["--responses", str(responses), "--raters", "1", "--no-progress"]),
                        ("publish ", ["--responses", str(responses), "--no-progress"]),
                        ("status", []), ("collect", ["--no-progress"]), ("review", []),
                        ("expire", ["--dry-run"])]:
        r = run.invoke(main, [verb.strip(), *base, *extra])
        assert r.exit_code == 0, (verb, r.output)
        outputs[verb] = r.output
    assert "2 new tasks planned" in outputs["publish"] and "2 tasks x 2 submissions" in outputs["publish"]
    assert "every item of this batch already has its task" in outputs["publish "]
    assert "tasks (ledger): created 2" in outputs["status"] and "submissions collected: 0" in outputs["status"]
    assert "2 tasks: 0 new submissions" in outputs["collect"]
    assert "2 tasks expired (dry run)" in outputs["expire"]
    r = run.invoke(main, ["review", *base, "--reject-failed-attention", "--feedback", " "])
    assert r.exit_code == 2 and "a rejected rater must be told why" in r.output, r.output
    for verb, out in outputs.items():
        assert not MTURK_WORDS.search(out.replace("hit.", "")), (verb, out)


def test_neutral_verbs_help_names_mturk_units_only_as_mturk_s():
    """Every verb but `sandbox` (the local MTurk) serves every platform, so its --help speaks of tasks,
    submissions and raters; an MTurk word appears only where the line says it is MTurk's."""
    from helpers.commands import all_commands

    verbs = [path for path, _ in all_commands(main) if path[0] != "sandbox"]
    assert len(verbs) > 10
    for verb in verbs:
        text = CliRunner().invoke(main, [*verb, "--help"], terminal_width=400).output
        for line in text.splitlines():
            if MTURK_WORDS.search(line) and "production server" not in line:  # serve --workers: server processes
                assert "MTurk" in line, f"{' '.join(verb)} --help: {line.strip()!r}"
