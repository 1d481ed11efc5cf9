"""preview: rendered HTML/XML files for chosen items, the local server, CLI errors."""
from __future__ import annotations

import threading
import urllib.request

from click.testing import CliRunner
from lxml import etree

from helpers.mturk import SCHEMAS, make_cfg, response_row, write_responses
from mturk_eval.actions import preview as pv
from mturk_eval.cli import main


def _conf(tmp_path, extra=""):
    p = tmp_path / "exp.toml"
    p.write_text(f'[experiment]\nname = "exp1"\nruns_dir = "{tmp_path / "runs"}"\n{extra}')
    return p


def test_cli_preview_writes_pages_and_questions(tmp_path):
    responses = write_responses(tmp_path / "r.jsonl", 5)
    out = tmp_path / "pv"
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path, "[hit]\nitems_per_hit = 2\n")),
                                  "--responses", str(responses), "--out", str(out), "--count", "2"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["hit-001.html", "hit-001.xml", "hit-002.html", "hit-002.xml",
                                                     "index.html"]
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "HTMLQuestion.xsd")))
    assert schema.validate(etree.parse(str(out / "hit-001.xml")))
    page = (out / "hit-002.html").read_text()
    assert response_row(2)["response"] in page and response_row(3)["response"] in page and 'name="i1_persona"' in page
    index = (out / "index.html").read_text()
    assert "hit-001.html" in index and response_row(0)["item_id"] in index


def test_preview_chosen_items_and_attention(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 5)
    files = pv.preview(cfg, responses, tmp_path / "pv", item_ids=(response_row(4)["item_id"],), attention=True)
    assert [f.name for f in files] == ["hit-001.html", "hit-001.xml", "hit-002.html", "hit-002.xml", "index.html"]
    assert response_row(4)["response"] in files[0].read_text()


def test_preview_errors_exit_2(tmp_path):
    responses = write_responses(tmp_path / "r.jsonl", 2)
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path)), "--responses", str(responses),
                                  "--item", "nope"])
    assert r.exit_code == 2 and "--item: 'nope' is not an item_id" in r.output
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path)), "--responses", str(tmp_path / "x")])
    assert r.exit_code == 2 and "file not found" in r.output
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path)), "--responses", str(responses),
                                  "--count", "0"])
    assert r.exit_code == 2 and "--count: expected an integer >= 1" in r.output
    h = CliRunner().invoke(main, ["preview", "--help"]).output
    for opt in ("--out", "--item", "--count", "--serve", "--port", "--attention", "--responses"):
        assert opt in h


def test_preview_server_serves_the_files(tmp_path):
    cfg = make_cfg(tmp_path)
    responses = write_responses(tmp_path / "r.jsonl", 1)
    pv.preview(cfg, responses, tmp_path / "pv")
    httpd = pv.make_server(tmp_path / "pv", 0)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hit-001.html", timeout=5).read().decode()
        assert response_row(0)["response"] in body
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_preview_failure_writes_nothing(tmp_path):
    from helpers.mturk import response_row
    import pytest
    from mturk_eval.errors import UserError
    cfg = make_cfg(tmp_path, items_per_hit=40)
    responses = write_responses(tmp_path / "r.jsonl", rows=[response_row(i, response="y" * 1500) for i in range(80)])
    with pytest.raises(UserError, match="65535-byte limit"):
        pv.preview(cfg, responses, tmp_path / "pv", count=2)
    assert not (tmp_path / "pv").exists()


def _systems_rows():
    """A responses file in generate's usual order: every item of one system before the next, and within
    a system persona p1's items before p2's."""
    rows = []
    for eval_set in ("persona", "general"):
        for method in ("prompt_tuning", "finetune_none"):
            for model in ("smollm2-135m", "qwen-0.5b"):
                for persona in ("p1", "p2"):
                    for i in range(3):
                        rows.append(response_row(len(rows), eval_set=eval_set, method=method, model=model,
                                                 persona_id=persona,
                                                 item_id=f"{eval_set}.{persona}.{i}.{method}.{model}"))
    return rows


def test_spread_round_robins_over_systems_then_personas():
    rows = _systems_rows()
    order = pv.spread(rows)
    assert sorted(r["item_id"] for r in order) == sorted(r["item_id"] for r in rows)  # each item once
    systems = list(dict.fromkeys(pv._system(r) for r in rows))
    assert len(systems) == 8
    # The first 8 are one item of each system, in first-seen order, each its group's first item (p1).
    assert [pv._system(r) for r in order[:8]] == systems
    assert {r["persona_id"] for r in order[:8]} == {"p1"}
    # The next 8: each system again, now with its other persona.
    assert [pv._system(r) for r in order[8:16]] == systems and {r["persona_id"] for r in order[8:16]} == {"p2"}
    assert pv.spread(list(rows)) == order  # deterministic
    one_system = [response_row(i) for i in range(4)]
    assert pv.spread(one_system) == one_system  # nothing to spread: the file's order


def test_preview_default_shows_each_system(tmp_path):
    rows = _systems_rows()
    responses = write_responses(tmp_path / "r.jsonl", rows=rows)
    out = tmp_path / "pv"
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path, "[hit]\nitems_per_hit = 2\n")),
                                  "--responses", str(responses), "--out", str(out), "--count", "4"])
    assert r.exit_code == 0, r.output
    assert "note:" not in r.output
    shown = {pv._system(row) for row in rows
             for n in range(1, 5) if row["response"] in (out / f"hit-{n:03d}.html").read_text()}
    assert len(shown) == 8
    # Too few HITs for every system: said, with the --count that would do.
    r = CliRunner().invoke(main, ["preview", "--config", str(_conf(tmp_path, "[hit]\nitems_per_hit = 2\n")),
                                  "--responses", str(responses), "--out", str(out), "--count", "1"])
    assert r.exit_code == 0, r.output
    assert "note: this HIT shows 2 of the 8 eval_set/method/model groups; --count 4 shows each" in r.output


def test_preview_with_external_questions_writes_the_external_question(tmp_path):
    """[platform.mturk] question = "external": MTurk gets an ExternalQuestion pointing at the rating site,
    not an HTMLQuestion; the page beside it is what the frame shows."""
    responses = write_responses(tmp_path / "r.jsonl", 4)
    out = tmp_path / "pv"
    conf = _conf(tmp_path, '[hit]\nitems_per_hit = 2\n[platform.mturk]\nquestion = "external"\nframe_height = 900\n'
                           'target = "local"\nendpoint_url = "http://127.0.0.1:9"\n'
                           '[site]\npublic_url = "https://rate.example.org"\n')
    r = CliRunner().invoke(main, ["preview", "--config", str(conf), "--responses", str(responses), "--out", str(out),
                                  "--count", "2"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["hit-001.html", "hit-001.xml", "hit-002.html", "hit-002.xml",
                                                     "index.html"]
    doc = etree.parse(str(out / "hit-001.xml"))
    assert etree.XMLSchema(etree.parse(str(SCHEMAS / "ExternalQuestion-2006-07-14.xsd"))).validate(doc)
    assert not etree.XMLSchema(etree.parse(str(SCHEMAS / "HTMLQuestion.xsd"))).validate(doc)
    url = doc.getroot().find("{*}ExternalURL").text
    assert url == "https://rate.example.org/mturk/PREVIEW-001"            # the address publish would use
    assert doc.getroot().find("{*}FrameHeight").text == "900"
    assert response_row(0)["response"] in (out / "hit-001.html").read_text()
    # The bundled sandbox starts its own site at publish (not [site] public_url): a placeholder stands in.
    conf2 = _conf(tmp_path, '[hit]\nitems_per_hit = 2\n[platform.mturk]\nquestion = "external"\n'
                            '[site]\npublic_url = "https://rate.example.org"\n')
    out2 = tmp_path / "pv2"
    r = CliRunner().invoke(main, ["preview", "--config", str(conf2), "--responses", str(responses), "--out", str(out2)])
    assert r.exit_code == 0, r.output
    assert pv.EXTERNAL_SITE_PLACEHOLDER in (out2 / "hit-001.xml").read_text()
