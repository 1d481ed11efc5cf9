"""Test helpers for the study planner: a toy rating model and simulated pilot/study rows of known
components (optionally a prompt part shared by the systems' responses to one prompt)."""
from __future__ import annotations

import numpy as np

from mturk_eval.config import ASPECTS
from mturk_eval.planning.model import AspectModel, RatingModel

METHODS = ("prompt_tuning", "finetune_none", "finetune_added")


def toy_model(excluded=0.0, workers=0.0, low=1, high=5, mean=3.2, prompt=0.0) -> RatingModel:
    f = ((high - low) / 4) ** 2
    return RatingModel(aspects=[AspectModel(a, mean, 0.45 * f, 0.15 * f, 0.6 * f, low=low, high=high,
                                            prompt_share=prompt) for a in ASPECTS],
                       source="test", ratings_per_rater=15, excluded_share=excluded, excluded_worker_share=workers)


def study_rows(rng, items, raters, systems, pool, effect_latent=0.0, sd=(0.67, 0.39, 0.77), prompt=0.0):
    """Rows of a study: ``prompt`` is the share of the item variance shared by the systems' responses to
    one prompt."""
    rows = []
    rater_eff = {a: rng.normal(0, sd[1], pool) for a in ASPECTS}
    shared = {a: rng.normal(0, sd[0] * np.sqrt(prompt), items) if prompt > 0 else np.zeros(items) for a in ASPECTS}
    for s in range(systems):
        for i in range(items):
            start = int(rng.integers(0, pool))
            item_eff = {a: shared[a][i] + rng.normal(0, sd[0] * np.sqrt(1 - prompt)) for a in ASPECTS}
            for w in (start + np.arange(raters)) % pool:
                for a in ASPECTS:
                    y = 3.2 + item_eff[a] + rater_eff[a][w] + rng.normal(0, sd[2]) + (effect_latent if s == 0 else 0)
                    rows.append({"item_id": f"persona.p1.q{i}.{METHODS[s]}.tiny", "eval_set": "persona",
                                 "method": METHODS[s], "model": "tiny", "persona_id": "p1", "worker_id": f"W{w}",
                                 "assignment_id": f"A{s}.{i}.{w}", "aspect": a, "score": int(np.clip(np.rint(y), 1, 5)),
                                 "work_time_s": 40})
    return rows


