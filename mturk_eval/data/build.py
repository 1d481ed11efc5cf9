"""``mturk-eval data build``: from the config's sources to ``runs/<experiment>/data/``.

Steps: load persona episodes -> group them into personas (``personas.py``) -> keep the N with the most
pairs -> per persona, a seeded 9:1 split into train and persona eval -> general pairs (DailyDialog topic
Relationship, both turns shorter than ``general_max_chars``) shuffled with the seed: the first
``general_eval_size`` form the general eval set, the rest the pool from which each persona's training
mix draws ``round(general_ratio * train pairs)`` pairs. Everything is written into a temp directory and
swapped in whole, so a failed build leaves the previous data as it was; the same config and seed give
byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.data.loaders import GeneralPair, load_general_source, load_persona_source, topic_key
from mturk_eval.data.personas import group_personas
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_directory, dumps_jsonl, sha256_file

MANIFEST_VERSION = 1


def _rng(seed: int, *parts: str) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random: stable across runs and platforms.
    return random.Random(":".join([str(seed), *parts]))


def _sources_fingerprint(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    out = []
    for group in ("persona_sources", "general_sources"):
        for src in getattr(cfg.data, group):
            entry = {"role": group, "format": src.format, "path": src.path}
            for key in ("path", "topics_path"):
                p = getattr(src, key)
                if p is None:
                    continue
                if not Path(p).exists():
                    hint = ""
                    if cfg.language == "ja" or "jpersona" in p.lower() or "jempathetic" in p.lower():
                        hint = (
                            " (JPersonaChat / JEmpatheticDialogues are not distributed with this toolkit: convert "
                            "them to the generic JSONL format described in docs/data.md and point this key at it)"
                        )
                    raise UserError(f"{cfg.source_path or 'config'}: data.{group}: {p}: file not found{hint}")
                entry[f"{key}_sha256"] = sha256_file(p)
                if key == "topics_path":
                    entry["topics_path"] = p
            out.append(entry)
    return out


def _fingerprint(cfg: ExperimentConfig, sources: list[dict[str, Any]]) -> str:
    d = {"version": MANIFEST_VERSION, "data": cfg.to_dict()["data"], "seed": cfg.seed, "sources": sources}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _general_pairs(cfg: ExperimentConfig) -> list[GeneralPair]:
    d = cfg.data
    wanted = topic_key(d.general_topic)
    seen: set[tuple[str, str]] = set()
    out = []
    for src in d.general_sources:
        for gp in load_general_source(src):
            if gp.topic is not None and topic_key(gp.topic) != wanted:
                continue
            if gp.topic is None and src.format == "dailydialog":
                raise UserError(
                    f"{src.path}: no topic labels found; set data.general_sources.topics_path to the aligned "
                    "topic file (dialogues_topic.txt or derived/dialogues_topic_<split>.txt)"
                )
            if len(gp.utterance) >= d.general_max_chars or len(gp.response) >= d.general_max_chars:
                continue
            key = (gp.utterance, gp.response)
            if key in seen:
                continue
            seen.add(key)
            out.append(gp)
    return out


def build_datasets(cfg: ExperimentConfig, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) ``runs/<exp>/data/`` and return its manifest."""
    d = cfg.data
    cfg_file = cfg.source_path or "config"
    if not d.persona_sources:
        raise UserError(f"{cfg_file}: data.persona_sources: expected at least one source")
    sources = _sources_fingerprint(cfg)
    fingerprint = _fingerprint(cfg, sources)
    out_dir = cfg.data_dir
    manifest_path = out_dir / "manifest.json"
    if not force and manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") == fingerprint and all((out_dir / f).exists() for f in old.get("files", {})):
            old["reused"] = True
            return old

    warnings: list[str] = []
    episodes = [ep for src in d.persona_sources for ep in load_persona_source(src, warnings)]
    groups = group_personas(episodes, d.persona_min_shared)
    ranked = sorted(range(len(groups)), key=lambda i: (-groups[i].num_pairs, i))
    if len(groups) < d.num_personas:
        raise UserError(
            f"{cfg_file}: data.num_personas: asks for {d.num_personas} personas but the data holds only {len(groups)}"
        )
    chosen = [groups[i] for i in ranked[: d.num_personas]]

    general = _general_pairs(cfg) if d.general_sources else []
    if d.general_sources and not general:
        raise UserError(
            f"{cfg_file}: data.general_topic / data.general_max_chars: no general pairs pass the filter "
            f"(topic {d.general_topic!r}, both turns under {d.general_max_chars} characters)"
        )
    gen_rng = _rng(cfg.seed, "general")
    general_ids = [f"g-{i:05d}" for i in range(len(general))]
    order = list(range(len(general)))
    gen_rng.shuffle(order)
    if d.general_sources and d.general_eval_size >= len(general):
        raise UserError(
            f"{cfg_file}: data.general_eval_size: {d.general_eval_size} leaves no general pairs for training "
            f"(only {len(general)} pass the filter)"
        )
    eval_idx = sorted(order[: d.general_eval_size])
    pool_idx = sorted(order[d.general_eval_size :])

    def general_row(i: int) -> dict[str, Any]:
        gp = general[i]
        return {"pair_id": general_ids[i], "persona_id": None, "kind": "general",
                "utterance": gp.utterance, "response": gp.response, "source": gp.source}

    files: dict[str, str] = {}
    personas_out = []
    per_persona_counts = []
    contents: dict[str, str] = {}
    for rank, group in enumerate(chosen, start=1):
        pid = f"p{rank}"
        pairs = [(u, r, ep.source) for ep in group.episodes for (u, r) in ep.pairs]
        rows = [
            {"pair_id": f"{pid}-{j:04d}", "persona_id": pid, "kind": "persona",
             "utterance": u, "response": r, "source": s}
            for j, (u, r, s) in enumerate(pairs)
        ]
        idx = list(range(len(rows)))
        _rng(cfg.seed, "split", pid).shuffle(idx)
        n_eval = max(1, round(len(rows) * d.eval_fraction))
        if n_eval >= len(rows):
            raise UserError(f"{cfg_file}: persona {pid} has only {len(rows)} pairs: too few to split into train and eval")
        eval_rows = [rows[i] for i in sorted(idx[:n_eval])]
        if d.max_persona_eval:
            eval_rows = eval_rows[: d.max_persona_eval]
        train_persona = [rows[i] for i in sorted(idx[n_eval:])]
        n_general = round(len(train_persona) * d.general_ratio) if d.general_sources else 0
        if n_general > len(pool_idx):
            raise UserError(
                f"{cfg_file}: data.general_ratio: persona {pid} needs {n_general} general pairs for its training mix "
                f"but only {len(pool_idx)} are left after the general eval set"
            )
        mix_idx = sorted(_rng(cfg.seed, "mix", pid).sample(pool_idx, n_general))
        train_rows = train_persona + [general_row(i) for i in mix_idx]
        _rng(cfg.seed, "order", pid).shuffle(train_rows)
        contents[f"{pid}/train.jsonl"] = dumps_jsonl(train_rows)
        contents[f"{pid}/persona_eval.jsonl"] = dumps_jsonl(eval_rows)
        personas_out.append({
            "persona_id": pid, "sentences": group.sentences, "num_pairs": len(rows),
            "num_episodes": len(group.episodes), "source": group.episodes[0].source,
        })
        per_persona_counts.append({
            "persona_id": pid, "episodes": len(group.episodes), "pairs": len(rows),
            "train_persona": len(train_persona), "train_general": n_general, "persona_eval": len(eval_rows),
            "sentences": group.sentences,
        })
    contents["general_eval.jsonl"] = dumps_jsonl(general_row(i) for i in eval_idx)
    contents["personas.json"] = json.dumps(personas_out, ensure_ascii=False, indent=2) + "\n"
    for name, text in contents.items():
        files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    manifest = {
        "version": MANIFEST_VERSION,
        "experiment": cfg.name,
        "fingerprint": fingerprint,
        "sources": sources,
        "counts": {
            "episodes": len(episodes),
            "personas_found": len(groups),
            "personas": per_persona_counts,
            "general_filtered": len(general),
            "general_eval": len(eval_idx),
            "general_pool": len(pool_idx),
        },
        "rule": {
            "persona_grouping": f"share >= {d.persona_min_shared} normalised sentences with the persona's founding set",
            "split": f"seeded {1 - d.eval_fraction:.0%}/{d.eval_fraction:.0%} train/persona-eval per persona",
            "general": f"topic {d.general_topic!r}, both turns < {d.general_max_chars} chars, ratio {d.general_ratio}",
        },
        "warnings": warnings,
        "files": files,
        "config": cfg.to_dict(),
    }
    with atomic_directory(out_dir) as tmp:
        for name, text in contents.items():
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    manifest["reused"] = False
    return manifest


def format_summary(manifest: dict[str, Any]) -> str:
    """The terminal summary: personas chosen with their pair counts, as the paper reports them."""
    c = manifest["counts"]
    lines = []
    state = "up to date, reused" if manifest.get("reused") else "built"
    lines.append(f"Experiment {manifest['experiment']}: data {state}")
    lines.append(f"{c['episodes']} episodes grouped into {c['personas_found']} personas; chosen by pair count:")
    header = f"{'persona':<8} {'episodes':>8} {'pairs':>6} {'train':>6} {'+general':>9} {'eval':>5}  first sentences"
    lines.append(header)
    lines.append("-" * len(header))
    personas = {}
    for p in c["personas"]:
        first = " / ".join(p.get("sentences", [])[:2])
        lines.append(
            f"{p['persona_id']:<8} {p['episodes']:>8} {p['pairs']:>6} {p['train_persona']:>6} "
            f"{p['train_general']:>9} {p['persona_eval']:>5}  {first}"
        )
        personas[p["persona_id"]] = p["pairs"]
    pair_list = ", ".join(str(v) for v in personas.values())
    lines.append(f"The {len(personas)} personas have {pair_list} pairs (the paper's had 185, 167 and 166).")
    lines.append(
        f"General pairs passing the filter: {c['general_filtered']} "
        f"({c['general_eval']} general eval, {c['general_pool']} in the training pool)"
    )
    for w in manifest.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
