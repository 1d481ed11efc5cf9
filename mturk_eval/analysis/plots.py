"""The report's PNG plots (matplotlib, Agg backend): persona-consideration distributions (each Table 3
aspect's) as stacked bars per system, and per-aspect means with their 95% confidence intervals."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mturk_eval.analysis.core import Analysis  # noqa: E402


def _labels(records: list[dict]) -> list[str]:
    return [f"{r['eval_set_name']}\n{r['method_name']}\n{r['model']}" for r in records]


def persona_bars(an: Analysis, path: Path, aspect: str | None = None) -> None:
    """Stacked bars: for each system, the share of responses in each bin of a Table 3 aspect (the first
    one by default)."""
    from mturk_eval.analysis.render import table3_of

    records, BINS = table3_of(an, aspect)
    title = an.aspect_title(aspect) if aspect is not None else an.table3_aspect.title
    counts = np.array([[r["bins"][b] for b in BINS] for r in records], dtype=float).reshape(len(records), len(BINS))
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(counts) + 2), 4.2))
    x = np.arange(len(counts))
    bottom = np.zeros(len(counts))
    colours = plt.cm.RdYlGn(np.linspace(0.15, 0.85, len(BINS)))
    for j, b in enumerate(BINS):
        ax.bar(x, share[:, j], bottom=bottom, color=colours[j], label=b, edgecolor="white")
        bottom += share[:, j]
    for i, t in enumerate(totals[:, 0]):
        ax.text(i, 1.01, f"n={int(t)}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, _labels(records), fontsize=7)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of responses")
    ax.set_title(f"{title}: each response's mean score")
    ax.legend(title="mean score", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def means_with_ci(an: Analysis, path: Path) -> None:
    """Grouped points: each system's mean per aspect with its 95% interval (the report's interval method)."""
    ASPECTS = an.aspects
    n = len(an.table2)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(ASPECTS) * max(n, 1) / 3 + 3), 4.2))
    width = 0.8 / max(n, 1)
    for k, r in enumerate(an.table2):
        means = np.array([r["aspects"][a]["mean"] for a in ASPECTS])
        lo = np.array([r["aspects"][a]["ci_low"] for a in ASPECTS])
        hi = np.array([r["aspects"][a]["ci_high"] for a in ASPECTS])
        err = np.vstack([np.nan_to_num(means - lo), np.nan_to_num(hi - means)])
        xs = np.arange(len(ASPECTS)) - 0.4 + width * (k + 0.5)
        ax.errorbar(xs, means, yerr=err, fmt="o", capsize=3, markersize=4,
                    label=f"({r['letter']}) {r['eval_set_name']} / {r['method_name']} / {r['model']}")
    ax.set_xticks(np.arange(len(ASPECTS)), [an.aspect_title(a) for a in ASPECTS])
    low, high = min(a.low for a in an.aspect_info), max(a.high for a in an.aspect_info)
    ax.set_ylim(low, high)
    ax.set_ylabel(f"mean score ({low}-{high})")
    how = "items and raters random" if an.settings.get("intervals", "crossed") == "crossed" else "item bootstrap"
    ax.set_title(f"Mean score per aspect with 95% CI ({how})")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(an: Analysis, out_dir: Path) -> dict[str, str]:
    """Write the plots into ``out_dir/plots``; returns their paths relative to ``out_dir``: ``means``,
    and ``persona`` (``persona_consideration.png``) for the one Table 3 aspect, or ``table3:<aspect>``
    (``bins_<aspect>.png``) for each of several."""
    d = out_dir / "plots"
    d.mkdir(parents=True, exist_ok=True)
    means_with_ci(an, d / "means_ci.png")
    marked = an.table3_aspects
    if not marked:
        return {"means": "plots/means_ci.png"}
    if len(marked) == 1:
        persona_bars(an, d / "persona_consideration.png")
        return {"persona": "plots/persona_consideration.png", "means": "plots/means_ci.png"}
    out = {}
    for a in marked:
        persona_bars(an, d / f"bins_{a.name}.png", a.name)
        out[f"table3:{a.name}"] = f"plots/bins_{a.name}.png"
    return out | {"means": "plots/means_ci.png"}
