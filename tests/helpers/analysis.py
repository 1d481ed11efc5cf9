"""Synthetic long-format ratings for the analysis tests and benchmarks/bench_report.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mturk_eval.config import ASPECTS

SYSTEMS = [(e, m, "tiny") for e in ("persona", "general") for m in ("prompt_tuning", "finetune_none", "finetune_added")]


def make_rows(
    n_prompts: int = 8,
    workers_per_item: int = 5,
    n_workers: int = 12,
    seed: int = 0,
    shift: dict[str, float] | None = None,
    systems: list[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Every system answers the same ``n_prompts`` prompts per eval set; each item is rated by
    ``workers_per_item`` distinct workers on the four aspects. ``shift`` moves a method's scores."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    rows = []
    for es, method, model in systems or SYSTEMS:
        for p in range(n_prompts):
            item_id = f"{es}.p1.q{p}.{method}.{model}"
            base = rng.normal(3.0 + shift.get(method, 0.0), 0.7)
            for w in rng.choice(n_workers, workers_per_item, replace=False):
                aid = f"A.{es}.{method}.{model}.{p}.W{w}"
                for a in ASPECTS:
                    s = int(np.clip(np.rint(base + rng.normal(0, 0.8)), 1, 5))
                    rows.append({"item_id": item_id, "eval_set": es, "method": method, "model": model,
                                 "persona_id": "p1", "worker_id": f"AW{w}", "assignment_id": aid,
                                 "aspect": a, "score": s, "simulated": 0, "work_time_s": 30 + int(w)})
    return rows


def responses_for(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A responses.jsonl matching ``rows``: pair ids shared across methods so tests can be paired."""
    seen = {}
    for r in rows:
        if r["item_id"] in seen:
            continue
        q = r["item_id"].split(".")[2]
        seen[r["item_id"]] = {
            "item_id": r["item_id"], "persona_id": r.get("persona_id"), "persona": ["i like tea."],
            "eval_set": r["eval_set"], "pair_id": q, "method": r["method"], "model": r["model"],
            "utterance": "hello", "response": f"reply {q} {r['method']}", "reference": "hi",
        }
    return list(seen.values())


def make_arrays(n_rows: int, workers_per_item: int = 5, all_aspects: bool = False, n_workers: int = 2000,
                seed: int = 0) -> dict[str, list]:
    """Columns of ``n_rows`` long-format rows, built vectorised for the benchmark.

    ``all_aspects=False``: each item is rated by ``workers_per_item`` workers on one aspect (cycled over
    items), so 1e6 rows hold 2e5 items. ``all_aspects=True``: on all four aspects (1e6 rows = 5e4 items).
    """
    rng = np.random.default_rng(seed)
    per_item = workers_per_item * (len(ASPECTS) if all_aspects else 1)
    n_items = n_rows // per_item
    item = np.repeat(np.arange(n_items), per_item)
    k = np.tile(np.arange(per_item), n_items)
    wslot = k // len(ASPECTS) if all_aspects else k
    aspect = k % len(ASPECTS) if all_aspects else item % len(ASPECTS)
    sys_idx = item % len(SYSTEMS)
    base = rng.normal(3.2, 0.7, n_items)
    score = np.clip(np.rint(base[item] + rng.normal(0, 0.9, item.size)), 1, 5).astype(int)
    worker = (item * 7 + wslot * 131) % n_workers
    es = np.array([s[0] for s in SYSTEMS])[sys_idx]
    me = np.array([s[1] for s in SYSTEMS])[sys_idx]
    return {
        "item_id": [f"it{i}" for i in item.tolist()],
        "eval_set": es.tolist(), "method": me.tolist(), "model": ["tiny"] * item.size,
        "persona_id": ["p1"] * item.size,
        "worker_id": [f"AW{w}" for w in worker.tolist()],
        "assignment_id": [f"A{i}x{w}" for i, w in zip(item.tolist(), worker.tolist())],
        "aspect": np.array(ASPECTS)[aspect].tolist(),
        "score": score.tolist(),
        "work_time_s": (20 + worker % 40).tolist(),
    }


def two_scale_study(tmp_path: Path, coherence_table3: bool = False) -> tuple[list[dict[str, Any]], Path]:
    """Three items rated by two workers on humour (1-7, binned as Table 3) and coherence (1-4; binned too
    with ``coherence_table3``): ``r.csv`` and the config ``c.toml`` naming both aspects. Humour means
    1.5, 6.5, 4; coherence means 4, 1.5, 2.5."""
    from mturk_eval.analysis.ratings import write_ratings_csv

    rows = []
    for i, (humour, coh) in enumerate([([1, 2], [4, 4]), ([7, 6], [1, 2]), ([4, 4], [3, 2])]):
        for w in range(2):
            base = {"item_id": f"i{i}", "eval_set": "persona", "method": "m", "model": "t", "worker_id": f"W{w}"}
            rows += [{**base, "aspect": "humour", "score": humour[w]}, {**base, "aspect": "coherence", "score": coh[w]}]
    write_ratings_csv(tmp_path / "r.csv", rows)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[experiment]\nname = "x"\nruns_dir = "{tmp_path}/runs"\n[report]\nbootstrap_samples = 50\n'
                   '[[report.aspects]]\nname = "humour"\nscale = [1, 7]\ntable3 = true\n'
                   '[[report.aspects]]\nname = "coherence"\nscale = [1, 4]\n'
                   + ("table3 = true\n" if coherence_table3 else ""), encoding="utf-8")
    return rows, cfg
