"""Generation speed: our batched sampler against PEFT's own prompt-tuning ``generate`` (same soft prompt,
same prompts, greedy), each in fp32 and in the low precision ``auto`` picks (bf16 on this CPU), on CPU
with the default model; a batch-size sweep of ours against the matmul ceiling measured in the same run
(the model's linear layers alone on a batch of one-token rows); and what bf16 changes in the responses
(identical share, distinct-1/2). Prints ratios against PEFT measured in the same run.

    .venv/bin/python benchmarks/bench_generation.py [--prompts 64] [--new-tokens 32] [--adapter DIR]

The soft prompt is a trained PEFT adapter (``--adapter``; default: the demo's p1 prompt if present),
else the persona-text initialisation. PEFT runs with transformers' default attention (``sdpa``), as a
user gets it; ours with :mod:`mturk_eval.generators.attention`. Correctness: our batch-1 output equals the
uncached reference in the same dtype, our batch-16 output equals our batch-1 output, PEFT's batch-16
output is compared with ours (its left padding shifts positions, so it need not match).
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mturk_eval.analysis.distinct import distinct_n  # noqa: E402
from mturk_eval.generators.attention import use_fast_decoding  # noqa: E402
from mturk_eval.generators.formatting import PairFormat  # noqa: E402
from mturk_eval.generators.models import load_model  # noqa: E402
from mturk_eval.generators.precision import resolve_dtype, torch_dtype  # noqa: E402
from mturk_eval.generators.prefix import backbone, prefix_embeds  # noqa: E402
from mturk_eval.generators.prompt_tuning import init_soft_prompt, load_prompt  # noqa: E402
from mturk_eval.generators.sampling import DecodeSettings, generate, reference_greedy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PERSONA = ["i work night shifts as a nurse.", "i collect old comic books.", "i am training for my first marathon.",
           "i have two cats named salt and pepper.", "i can not stand spicy food."]


def utterances(n: int) -> list[str]:
    """``n`` utterances from the shipped sample data (persona and general pairs), cycled."""
    out = []
    for name in ("personas.jsonl", "general.jsonl"):
        for line in (REPO / "mturk_eval" / "data" / "sample" / name).read_text().splitlines():
            out.append(json.loads(line)["utterance"])
    out = list(dict.fromkeys(u for u in out if u.strip()))
    return [out[i % len(out)] for i in range(n)]


def fix_peft_cache_keyword(peft_model) -> bool:
    """Make PEFT 0.21's prompt-tuning generate work where transformers renamed ``past_key_values`` to
    ``cache`` (transformers 5.24; model-notes.md); returns whether a fix was needed.

    PEFT looks for the cache under ``past_key_values`` in what the base model's
    ``prepare_inputs_for_generation`` returns; finding none, it re-inserts the virtual tokens at every
    step. Renaming the returned key lets PEFT see the cache; the model's forward still accepts the old
    name (a deprecated alias for ``cache``).
    """
    base = peft_model.base_model
    params = inspect.signature(type(backbone(base)).forward).parameters
    if "cache" not in params or "past_key_values" in params:
        return False
    orig = base.prepare_inputs_for_generation

    @functools.wraps(orig)
    def prepare(*args, **kwargs):
        out = orig(*args, **kwargs)
        if "cache" in out and "past_key_values" not in out:
            out["past_key_values"] = out.pop("cache")
        return out

    peft_model.base_model_prepare_inputs_for_generation = prepare
    return True


def peft_generate(pm, tok, prompts, batch_size, new_tokens, stops):
    outs = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i : i + batch_size]
        L = max(len(p) for p in batch)
        ids = torch.tensor([[tok.pad_token_id] * (L - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in batch])
        with torch.inference_mode():
            g = pm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                            eos_token_id=sorted(stops), pad_token_id=tok.pad_token_id)
        for row in g[:, L:].tolist():
            cut = []
            for t in row:
                cut.append(t)
                if t in stops:
                    break
            outs.append(cut)
    return outs


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def matmul_ceiling(model, batch: int, repeats: int = 7) -> float:
    """Seconds for one decoding step's matmuls alone: every linear layer of ``model`` (the output layer
    included) applied to ``batch`` one-token rows, in the model's dtype (median of ``repeats``)."""
    lins = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
    dt = lins[0].weight.dtype
    xs = {n: torch.randn(batch, n, dtype=dt) for n in {lin.in_features for lin in lins}}
    ts = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t = time.perf_counter()
            for lin in lins:
                lin(xs[lin.in_features])
            if i:
                ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--adapter", default=None, help="PEFT prompt-tuning adapter directory")
    ap.add_argument("--dtype", default="auto", help="the low precision to compare with fp32 (default: auto)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the interleaved batch-16 runs (median)")
    ap.add_argument("--batches", default="4,8,32,64", help="other batch sizes of the sweep (ours, low precision)")
    ap.add_argument("--peft-batch1", action="store_true", help="also PEFT at batch 1 (slow)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: torch's own); 1 is steadier on a machine shared with other jobs, "
                    "where a second thread waits for a core at every parallel step")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    low_name = resolve_dtype(args.dtype, "cpu")
    models = {"float32": load_model(args.model, device="cpu", dtype=torch.float32)}
    models[low_name] = load_model(args.model, device="cpu", dtype=torch_dtype(low_name))
    m32 = models["float32"]
    fmt = PairFormat(m32.tokenizer)
    stops = fmt.stop_ids
    pad = m32.tokenizer.pad_token_id
    adapter = args.adapter or REPO / "runs" / "demo" / "models" / m32.slug / "p1" / "prompt_tuning"
    source = "persona-text initialisation (untrained)"
    trained = None
    if Path(adapter).is_dir() and (Path(adapter) / "adapter_config.json").is_file():
        trained = load_prompt(adapter)
        source = f"trained adapter {adapter}"
    pms, pes = {}, {}
    for name, m in models.items():
        pm, param = init_soft_prompt(m.model, m.path, PERSONA, 200)
        if trained is not None and trained.shape == param.shape:
            with torch.no_grad():
                param.copy_(trained)
        fixed = fix_peft_cache_keyword(pm)
        pms[name] = pm
        pes[name] = prefix_embeds(m.model, param.detach(), fmt.prefix_ids(None))
    prompts = [fmt.encode(u).prompt_ids for u in utterances(args.prompts)]
    n = len(prompts)
    import peft
    import transformers

    flags = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in open("/proc/cpuinfo").read())
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus ({platform.processor() or 'cpu'}; {flags or 'no bf16 flags'}), "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}, peft {peft.__version__}")
    print(f"model {args.model}, {n} prompts (mean {sum(map(len, prompts)) / n:.1f} tokens), {args.new_tokens} new tokens, "
          f"200 virtual tokens from {source}; PEFT cache-keyword fix needed: {fixed}; low precision: {low_name}")

    def ours(name, bs, **kw):
        m = models[name]
        use_fast_decoding(m.model)
        s = DecodeSettings(max_new_tokens=args.new_tokens, batch_size=bs, **kw)
        return generate(m.model, pes[name], prompts, s, stops, pad)

    def theirs(name, bs):
        models[name].model.set_attn_implementation("sdpa")  # transformers' default, as PEFT users run it
        return peft_generate(pms[name], m32.tokenizer, prompts, bs, args.new_tokens, stops)

    secs: dict[str, list[float]] = {}
    outs: dict[str, list] = {}

    def run(label, fn):
        out, t = timed(fn)
        secs.setdefault(label, []).append(t)
        outs[label] = out
        print(f"  {label}: {t:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)

    ours(low_name, 16)  # warm-up (first-call allocations)
    ours("float32", 16)
    lo = low_name
    for _ in range(args.repeats):  # interleaved: bursts of other work on the shared machine hit all alike
        run("PEFT fp32 b16", lambda: theirs("float32", 16))
        run(f"PEFT {lo} b16", lambda: theirs(lo, 16))
        run("ours fp32 b16", lambda: ours("float32", 16))
        run(f"ours {lo} b16", lambda: ours(lo, 16))
    if args.peft_batch1:
        run("PEFT fp32 b1", lambda: theirs("float32", 1))
    run("ours fp32 b1", lambda: ours("float32", 1))
    run(f"ours {lo} b1", lambda: ours(lo, 1))
    sweep = sorted({16, *(int(b) for b in args.batches.split(",") if b)})
    for b in sweep:
        if b != 16:
            run(f"ours {lo} b{b}", lambda: ours(lo, b))
    ceil = {b: matmul_ceiling(models[lo].model, b) for b in sweep}
    ceil32 = matmul_ceiling(m32.model, 16)
    med = {k: statistics.median(v) for k, v in secs.items()}

    # correctness, in each dtype
    for name, short in (("float32", "fp32"), (lo, lo)):
        ref = [reference_greedy(models[name].model, pes[name], p, args.new_tokens, stops) for p in prompts[:4]]
        b1, b16 = outs[f"ours {short} b1"], outs[f"ours {short} b16"]
        print(f"{short}: ours b1 == uncached reference {sum(a == b for a, b in zip(b1, ref))}/4; "
              f"ours b16 == ours b1 {sum(a == b for a, b in zip(b16, b1))}/{n}; "
              f"PEFT b16 == ours b1 {sum(a == b for a, b in zip(outs[f'PEFT {short} b16'], b1))}/{n}")
    if args.peft_batch1:
        print(f"PEFT fp32 b1 == ours fp32 b1: {sum(a == b for a, b in zip(outs['PEFT fp32 b1'], outs['ours fp32 b1']))}/{n}")
    t32 = [fmt.decode_response(o) for o in outs["ours fp32 b16"]]
    tlo = [fmt.decode_response(o) for o in outs[f"ours {lo} b16"]]
    same = sum(a == b for a, b in zip(t32, tlo))
    print(f"responses {lo} vs fp32: {same}/{n} identical ({same / n:.0%}); distinct-1 {distinct_n(tlo, 1):.3f} vs "
          f"{distinct_n(t32, 1):.3f}, distinct-2 {distinct_n(tlo, 2):.3f} vs {distinct_n(t32, 2):.3f}")
    print()
    print("| run | seconds | responses/s | tokens/s | vs PEFT fp32 b16 | vs PEFT same dtype b16 |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, t in med.items():
        toks = sum(map(len, outs[label]))
        same_dt = f"PEFT {'fp32' if 'fp32' in label else lo} b16"
        tag = f" (median of {len(secs[label])})" if len(secs[label]) > 1 else ""
        print(f"| {label}{tag} | {t:.1f} | {n / t:.2f} | {toks / t:.1f} | {med['PEFT fp32 b16'] / t:.2f}x | "
              f"{med[same_dt] / t:.2f}x |")
    print()
    print(f"| batch ({lo}) | ours tokens/s | matmul ceiling tokens/s | share of ceiling |")
    print("|---:|---:|---:|---:|")
    for b in sweep:
        label = f"ours {lo} b{b}"
        rate = sum(map(len, outs[label])) / med[label]
        print(f"| {b} | {rate:.1f} | {b / ceil[b]:.1f} | {rate / (b / ceil[b]):.0%} |")
    print(f"(matmul step at batch 16: {ceil[16] * 1e3:.1f} ms {lo}, {ceil32 * 1e3:.1f} ms fp32)")


if __name__ == "__main__":
    main()
