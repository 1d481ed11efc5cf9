"""``mturk-eval generate``: build the data if needed, train every (persona x method x model), sample
responses for the persona and general eval sets, and write ``runs/<exp>/responses.jsonl``.

Checkpoints live in ``runs/<exp>/models/<model>/<persona>/<method>/``: a PEFT adapter (prompt-tuning)
or a full transformers model (fine-tuning), plus ``training.json`` (fingerprint, loss history, speed)
and ``loss.png``. A checkpoint whose fingerprint (model, method, persona, training data, training
settings, seed, format) matches is reused; ``force`` retrains. Each checkpoint also keeps its sampled
responses keyed by the generation settings and eval items, so a rerun with nothing changed is quick.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.io import atomic_directory, atomic_write_bytes, write_json, write_jsonl

ITEM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
# Bump when decoding changes its output for the same settings, so cached responses are not reused.
# v2: with min_new_tokens >= 1 a response's first token has visible text (no whitespace-only responses).
DECODE_VERSION = 2


@dataclass
class EvalItem:
    eval_set: str  # persona | general
    pair: Any  # mturk_eval.data.Pair


@dataclass
class SystemResult:
    """One trained system (model x persona x method) and its responses."""

    model: str
    persona_id: str
    method: str
    checkpoint: Path
    reused: bool
    log: dict[str, Any]
    rows: list[dict[str, Any]]


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def decode_settings(cfg: ExperimentConfig, dtype: str = "float32"):
    """The validated decoding settings of ``cfg``; ``dtype``: generation.dtype made concrete."""
    from mturk_eval.generators.sampling import DecodeSettings

    g = cfg.generation
    file = cfg.source_path or "config"
    if not 0 <= g.min_new_tokens <= g.max_new_tokens:
        raise UserError(f"{file}: generation.min_new_tokens: expected 0 to max_new_tokens ({g.max_new_tokens}), got {g.min_new_tokens}")
    if g.strategy == "beam" and g.num_beams < 1:
        raise UserError(f"{file}: generation.num_beams: expected an integer >= 1, got {g.num_beams}")
    if g.strategy == "sample" and (g.temperature <= 0 or not 0 < g.top_p <= 1 or g.top_k < 0):
        raise UserError(f"{file}: generation: sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 0, "
                        f"got temperature={g.temperature}, top_p={g.top_p}, top_k={g.top_k}")
    return DecodeSettings(
        strategy=g.strategy,
        max_new_tokens=g.max_new_tokens,
        min_new_tokens=g.min_new_tokens,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        num_beams=g.num_beams,
        batch_size=g.batch_size,
        seed=cfg.seed,
        dtype=dtype,
    )


def training_fingerprint(cfg: ExperimentConfig, model: str, method: str, persona: Any, train_pairs: list,
                         dtype: str = "float32") -> str:
    """``dtype``: training.dtype made concrete; fp32 leaves it out, so checkpoints trained before
    training.dtype existed (all fp32) stay valid."""
    from mturk_eval.generators.formatting import FORMAT_VERSION

    t = dataclasses.asdict(cfg.training)
    t.pop("gradient_checkpointing", None)  # changes memory, not the result
    t.pop("dtype", None)
    if dtype != "float32":
        t["dtype"] = dtype
    if method == "prompt_tuning":
        t.pop("finetune_lr", None)
    else:
        t.pop("prompt_lr", None)
        t.pop("num_virtual_tokens", None)
    return _sha(
        {
            "format": FORMAT_VERSION,
            "model": model,
            "method": method,
            "persona": persona.sentences,
            "train": [[p.utterance, p.response] for p in train_pairs],
            "training": t,
            "seed": cfg.seed,
        }
    )


def save_loss_plot(path: Path, log: dict[str, Any], title: str) -> None:
    """Step losses and epoch means of one training run as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = log.get("step_losses", [])
    ax.plot(range(1, len(steps) + 1), steps, lw=0.8, alpha=0.6, label="batch loss")
    ep = log.get("epoch_losses", [])
    if ep and steps:
        per = len(steps) / len(ep)
        ax.plot([per * (i + 1) for i in range(len(ep))], ep, "o-", label="epoch mean")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy (response tokens)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_summary_plot(path: Path, results: list[SystemResult]) -> None:
    """Epoch-mean training loss of every system in one PNG, one panel per method."""
    import io

    import matplotlib.pyplot as plt

    fig = summary_figure(results)
    if fig is None:
        return
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def summary_figure(results: list[SystemResult]):
    """The figure of :func:`save_summary_plot` (None when there is nothing to plot); whole-epoch ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = sorted({r.method for r in results})
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.5), dpi=100, squeeze=False)
    for ax, m in zip(axes[0], methods):
        for r in results:
            if r.method == m:
                ep = r.log.get("epoch_losses", [])
                ax.plot(range(1, len(ep) + 1), ep, "o-", label=f"{r.model} {r.persona_id}")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mean training loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _response_rows(
    items: list[EvalItem], persona: Any, method: str, slug: str, texts: list[str], settings: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for it, text in zip(items, texts):
        item_id = f"{it.eval_set}.{persona.persona_id}.{it.pair.pair_id}.{method}.{slug}"
        if not ITEM_ID.fullmatch(item_id):
            raise UserError(f"pair {it.pair.pair_id!r}: item id {item_id!r} does not match [A-Za-z0-9_.:-]{{1,200}}")
        rows.append(
            {
                "item_id": item_id,
                "persona_id": persona.persona_id,
                "persona": list(persona.sentences),
                "eval_set": it.eval_set,
                "pair_id": it.pair.pair_id,
                "method": method,
                "model": slug,
                "utterance": it.pair.utterance,
                "response": text,
                "reference": it.pair.response,
                "generation": settings,
            }
        )
    return rows


def run_generate(
    cfg: ExperimentConfig,
    force: bool = False,
    models: list[str] | None = None,
    methods: list[str] | None = None,
    device: str | None = None,
    data: Any = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[SystemResult]:
    """Train and sample every system of the experiment; writes ``runs/<exp>/responses.jsonl``."""
    import torch
    from accelerate import Accelerator

    from mturk_eval.generators.finetune import save_finetuned, train_finetune
    from mturk_eval.generators.formatting import PairFormat
    from mturk_eval.generators.models import LoadedModel, load_model, model_slug
    from mturk_eval.generators.prompt_tuning import load_prompt, save_prompt, train_prompt
    from mturk_eval.generators.trainer import Example

    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    models = models or cfg.models
    methods = methods or cfg.methods
    from mturk_eval.generators.models import check_model_available

    for name in models:  # a missing model is refused before anything is built or written
        check_model_available(name)
    if data is None:
        from mturk_eval.data import load_built
        from mturk_eval.data.build import build_datasets

        build_datasets(cfg)
        data = load_built(cfg)
    slugs = [model_slug(m) for m in models]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"models: two models share the id {slugs}; give distinct names")
    acc = Accelerator(cpu=(device == "cpu") or not torch.cuda.is_available())
    if not acc.is_main_process:
        echo = lambda msg: None  # noqa: E731  (one process speaks)
        progress = False
    dev = device or str(acc.device)
    from mturk_eval.generators.precision import resolve_dtype, torch_dtype, why

    train_dt = resolve_dtype(cfg.training.dtype, dev)
    gen_dt = resolve_dtype(cfg.generation.dtype, dev)
    echo(f"precision: training {why(cfg.training.dtype, train_dt, dev)}, generation {why(cfg.generation.dtype, gen_dt, dev)}")
    settings = decode_settings(cfg, gen_dt)
    general = [EvalItem("general", p) for p in data.general_eval()]
    results: list[SystemResult] = []
    torch.manual_seed(cfg.seed)

    for name in models:
        bases: dict[str, LoadedModel] = {}

        def base_in(dt: str) -> LoadedModel:
            """The frozen base model in ``dt`` (prompt-tuning trains in training.dtype, samples in generation.dtype)."""
            if dt not in bases:
                bases[dt] = load_model(name, device=dev, dtype=torch_dtype(dt))
            return bases[dt]

        base = base_in(train_dt)
        fmt = PairFormat(base.tokenizer, cfg.training.chat_template, cfg.training.max_length)
        pad = base.tokenizer.pad_token_id
        for persona in data.personas:
            pid = persona.persona_id
            train_pairs = data.train(pid)
            if not train_pairs:
                raise UserError(f"{cfg.data_dir}/{pid}/train.jsonl: expected training pairs, got none")
            items = [EvalItem("persona", p) for p in data.persona_eval(pid)] + general
            prompts = [fmt.encode(it.pair.utterance).prompt_ids for it in items]
            for method in methods:
                ckpt = cfg.run_dir / "models" / base.slug / pid / method
                fp = training_fingerprint(cfg, name, method, persona, train_pairs, train_dt)
                info_path = ckpt / "training.json"
                old = json.loads(info_path.read_text()) if info_path.is_file() else {}
                reuse = not force and old.get("fingerprint") == fp
                desc = f"{base.slug} {pid} {method}"
                model = base_in(gen_dt).model
                soft = None
                ft: LoadedModel | None = None
                if reuse:
                    log = old
                    if method == "prompt_tuning":
                        soft = load_prompt(ckpt, device=dev)
                    else:
                        ft = load_model(str(ckpt), device=dev, dtype=torch_dtype(gen_dt))
                        model = ft.model
                    echo(f"{desc}: trained already ({old.get('epochs')} epochs{_not_converged(old)}), reusing {ckpt}")
                else:
                    estimate = _estimate_echo(echo, desc, cfg.training)
                    ex = [Example(**vars(fmt.encode(p.utterance, p.response))) for p in train_pairs]
                    if method == "prompt_tuning":
                        peft_model, tlog = train_prompt(
                            base_in(train_dt), persona.sentences, ex, fmt.prefix_ids(None), cfg.training, cfg.seed,
                            desc=desc, accelerator=acc, progress=progress, on_estimate=estimate,
                        )
                        soft = peft_model.prompt_encoder["default"].embedding.weight.detach().clone()
                    else:
                        ft = load_model(name, device=dev, dtype=torch.float32, trainable=True)  # fp32 master weights
                        lead = fmt.prefix_ids(persona.sentences if method == "finetune_added" else None)
                        tlog = train_finetune(
                            ft, ex, cfg.training, cfg.seed, prefix_ids=lead, desc=desc, accelerator=acc, progress=progress,
                            dtype=train_dt, on_estimate=estimate,
                        )
                        model = ft.model
                    log = {
                        "fingerprint": fp,
                        "model": name,
                        "persona_id": pid,
                        "method": method,
                        "dtype": train_dt,
                        "epochs": tlog.epochs,
                        "converged": tlog.converged,
                        "epoch_losses": tlog.epoch_losses,
                        "step_losses": tlog.step_losses,
                        "pairs_per_s": round(tlog.pairs_per_s, 3),
                        "seconds": round(tlog.seconds, 2),
                        "num_train_pairs": len(train_pairs),
                        "training": {**dataclasses.asdict(cfg.training), "dtype": train_dt},
                    }
                    if acc.is_main_process:
                        with atomic_directory(ckpt) as tmp:
                            if method == "prompt_tuning":
                                save_prompt(peft_model, tmp)
                            else:
                                save_finetuned(ft, tmp)  # fp32
                            save_loss_plot(tmp / "loss.png", log, desc)
                            write_json(tmp / "training.json", log)
                    acc.wait_for_everyone()
                    if ft is not None:
                        model = ft.model.to(torch_dtype(gen_dt))
                    loss_txt = " -> ".join(f"{x:.3f}" for x in tlog.epoch_losses)
                    echo(f"{desc}: {tlog.epochs} epochs{_not_converged(log)}, loss {loss_txt}, {tlog.pairs_per_s:.2f} pairs/s, "
                         f"{_duration(tlog.seconds)} ({train_dt})")

                if acc.is_main_process:
                    rows = _sample(ckpt, fmt, model, soft, method, persona, items, prompts, settings, base.slug, pad, progress, desc)
                else:
                    rows = []
                results.append(SystemResult(name, pid, method, ckpt, reuse, log, rows))
                del ft

    if acc.is_main_process:
        rows = [r for res in results for r in res.rows]
        write_jsonl(cfg.run_dir / "responses.jsonl", rows)
        save_summary_plot(cfg.run_dir / "loss_curves.png", results)
        echo(f"wrote {len(rows)} responses to {cfg.run_dir / 'responses.jsonl'}; loss curves in {cfg.run_dir / 'loss_curves.png'}")
        warning = empty_warning(results, settings.min_new_tokens)
        if warning:
            echo(warning)
    return results


def estimate_run(
    cfg: ExperimentConfig,
    models: list[str] | None = None,
    methods: list[str] | None = None,
    device: str | None = None,
    data: Any = None,
    steps: int = 3,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """``generate --estimate``: what the whole ``generate`` run would take on this machine, before it starts.

    Times ``steps`` training steps (after one warm-up step) of every (model x method) on the first
    persona, and the responses of the first persona's eval prompts (at most 16), in the configured
    dtypes; extrapolates to every persona from its number of pairs. Trains nothing to keep and writes
    only the built data. Returns one row per system.
    """
    import math
    import time

    import torch

    from mturk_eval.generators.finetune import train_finetune
    from mturk_eval.generators.formatting import PairFormat
    from mturk_eval.generators.models import check_model_available, load_model
    from mturk_eval.generators.precision import resolve_dtype, torch_dtype, why
    from mturk_eval.generators.prefix import prefix_embeds
    from mturk_eval.generators.prompt_tuning import train_prompt
    from mturk_eval.generators.sampling import generate
    from mturk_eval.generators.trainer import Example

    models = models or cfg.models
    methods = methods or cfg.methods
    for name in models:
        check_model_available(name)
    if data is None:
        from mturk_eval.data import load_built
        from mturk_eval.data.build import build_datasets

        build_datasets(cfg)
        data = load_built(cfg)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t = cfg.training
    train_dt, gen_dt = resolve_dtype(t.dtype, dev), resolve_dtype(cfg.generation.dtype, dev)
    echo(f"precision: training {why(t.dtype, train_dt, dev)}, generation {why(cfg.generation.dtype, gen_dt, dev)}")
    settings = decode_settings(cfg, gen_dt)
    first = data.personas[0]
    general = data.general_eval()
    least = min(t.patience + 1, t.max_epochs)
    rows: list[dict[str, Any]] = []
    for name in models:
        base = load_model(name, device=dev, dtype=torch_dtype(train_dt))
        gen_base = base if gen_dt == train_dt else load_model(name, device=dev, dtype=torch_dtype(gen_dt))
        fmt = PairFormat(base.tokenizer, t.chat_template, t.max_length)
        ex = [Example(**vars(fmt.encode(p.utterance, p.response))) for p in data.train(first.persona_id)]
        prompts = [fmt.encode(p.utterance).prompt_ids for p in (data.persona_eval(first.persona_id) + general)][:16]
        for method in methods:
            got: list[float] = []
            kw = dict(progress=False, max_steps=1 + steps, on_estimate=lambda sps, spe: got.append(sps))
            if method == "prompt_tuning":
                pm, _ = train_prompt(base, first.sentences, ex, fmt.prefix_ids(None), t, cfg.seed, **kw)
                soft = pm.prompt_encoder["default"].embedding.weight.detach()
                pe = prefix_embeds(gen_base.model, soft, fmt.prefix_ids(None))
            else:
                ft = load_model(name, device=dev, dtype=torch.float32, trainable=True)
                lead = fmt.prefix_ids(first.sentences if method == "finetune_added" else None)
                train_finetune(ft, ex, t, cfg.seed, prefix_ids=lead, dtype=train_dt, **kw)
                del ft
                pe = prefix_embeds(gen_base.model, None, lead)
            sps = got[0] if got else float("nan")
            t0 = time.perf_counter()
            generate(gen_base.model, pe, prompts, settings, fmt.stop_ids, base.tokenizer.pad_token_id, blank_ids=fmt.blank_ids)
            per_response = (time.perf_counter() - t0) / max(len(prompts), 1)
            for persona in data.personas:
                pid = persona.persona_id
                spe = math.ceil(len(data.train(pid)) / t.batch_size)
                n_resp = len(data.persona_eval(pid)) + len(general)
                rows.append({"model": base.slug, "persona_id": pid, "method": method, "seconds_per_step": sps,
                             "steps_per_epoch": spe, "epoch_s": sps * spe, "early_stop_s": sps * spe * least,
                             "max_epochs_s": sps * spe * t.max_epochs, "responses": n_resp,
                             "generation_s": per_response * n_resp})
                echo(f"{base.slug} {pid} {method}: {training_estimate(sps, spe, t)}; "
                     f"{n_resp} responses ~{_duration(per_response * n_resp)}")
    lo = sum(r["early_stop_s"] for r in rows)
    hi = sum(r["max_epochs_s"] for r in rows)
    gen_s = sum(r["generation_s"] for r in rows)
    echo(f"estimate for the whole run ({len(rows)} systems; measured on {first.persona_id}: {steps} training steps "
         f"after a warm-up per method, {len(prompts)} responses): training {_duration(lo)} if every system stops "
         f"early after {least} epoch{'s' if least != 1 else ''}, {_duration(hi)} at max_epochs = {t.max_epochs}; generation {_duration(gen_s)}. "
         "Early stopping usually ends between the two; --max-epochs N caps it.")
    return rows


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def training_estimate(seconds_per_step: float, steps_per_epoch: int, t: Any) -> str:
    """What to expect from one system's training, from its measured seconds per step."""
    epoch = seconds_per_step * steps_per_epoch
    least = min(t.patience + 1, t.max_epochs)  # early stopping needs `patience` epochs without a gain
    return (f"{seconds_per_step:.2f} s/step x {steps_per_epoch} steps = {_duration(epoch)} per epoch; "
            f"{_duration(least * epoch)} (early stop after {least} epoch{'s' if least != 1 else ''}) to {_duration(t.max_epochs * epoch)} "
            f"(max_epochs = {t.max_epochs})")


def _estimate_echo(echo: Callable[[str], None], desc: str, t: Any) -> Callable[[float, int], None]:
    return lambda sps, spe: echo(f"{desc}: estimate from the first steps: {training_estimate(sps, spe, t)}")


def _not_converged(log: dict[str, Any]) -> str:
    """", stopped at max_epochs without converging" when training.json says so (nothing for old files)."""
    if log.get("converged") is False:
        return ", stopped at max_epochs without converging"
    return ""


def empty_warning(results: list[SystemResult], min_new_tokens: int = 1) -> str | None:
    """A counted warning when some responses are empty (raters would see a blank reply), by system."""
    total = sum(len(r.rows) for r in results)
    counts = [(r, sum(1 for row in r.rows if not str(row["response"]).strip())) for r in results]
    counts = [(r, n) for r, n in counts if n]
    if not counts:
        return None
    n_empty = sum(n for _, n in counts)
    by_system = "; ".join(f"{r.method} {r.persona_id} {_slug(r)}: {n} of {len(r.rows)}" for r, n in counts)
    why = ("generation.min_new_tokens = 0 allows them" if min_new_tokens < 1
           else "the model produced no visible text; check its training (loss curves)")
    return (f"warning: {n_empty} of {total} responses are empty ({by_system}); {why}. "
            "Raters would see these as blank replies.")


def _slug(r: SystemResult) -> str:
    return r.rows[0]["model"] if r.rows else r.model


def _sample(ckpt, fmt, model, soft, method, persona, items, prompts, settings, slug, pad, progress, desc) -> list[dict[str, Any]]:
    """Responses of one system, reusing the checkpoint's cached ones when nothing changed."""
    import torch
    from tqdm.auto import tqdm

    from mturk_eval.generators.prefix import prefix_embeds
    from mturk_eval.generators.sampling import generate

    public = settings.public()
    key = _sha({"gen": dataclasses.asdict(settings), "prompts": prompts, "decode": DECODE_VERSION, "blank": sorted(fmt.blank_ids),
                "fp": json.loads((ckpt / "training.json").read_text())["fingerprint"]})
    cache_path = ckpt / "responses_cache.json"
    if cache_path.is_file():
        try:
            cached = json.loads(cache_path.read_text())
        except ValueError:
            cached = {}
        if cached.get("key") == key and len(cached.get("texts", [])) == len(items):
            return _response_rows(items, persona, method, slug, cached["texts"], public)
    lead = fmt.prefix_ids(persona.sentences if method == "finetune_added" else None)
    with torch.inference_mode():
        pe = prefix_embeds(model, soft, lead)
    bar = tqdm(total=len(prompts), desc=f"sample {desc}", unit="resp", disable=None if progress else True, leave=False)
    outs = generate(model, pe, prompts, settings, fmt.stop_ids, pad, progress=bar.update, blank_ids=fmt.blank_ids)
    bar.close()
    texts = [fmt.decode_response(o) for o in outs]
    write_json(cache_path, {"key": key, "texts": texts})
    return _response_rows(items, persona, method, slug, texts, public)
