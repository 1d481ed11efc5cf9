"""Experiment configuration: one TOML file under ``experiments/`` read into typed dataclasses.

Every section is a small dataclass (PEFT style). Unknown keys and wrong types are errors that name the
file and the dotted key. Paths may use ``${VAR}`` variables; ``${MTURK_EVAL_DATA}`` defaults to
``../shared/data`` (searched upwards from the config file and the current directory) when unset.
Relative paths resolve against the config file's directory.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mturk_eval.errors import UserError
from mturk_eval.io import read_text

ASPECTS: tuple[str, ...] = ("fluency", "engagingness", "relevance", "persona")
"""The four rated aspects, in the order the paper's tables use. ``persona`` = persona consideration."""

METHODS: tuple[str, ...] = ("prompt_tuning", "finetune_none", "finetune_added")
"""Training methods: the paper's prompt-tuning and its two fine-tuning baselines."""

EVAL_SETS: tuple[str, ...] = ("persona", "general")
"""Eval sets: held-out persona pairs, and general (DailyDialog Relationship) pairs."""

PERSONA_FORMATS = ("convai2", "xpersona", "synthetic", "jsonl")
GENERAL_FORMATS = ("dailydialog", "jsonl")


@dataclass
class DataSource:
    """One input file. ``format`` is one of convai2, xpersona, synthetic, jsonl (persona sources) or
    dailydialog, jsonl (general sources)."""

    format: str
    path: str
    # DailyDialog only: the topic label file aligned line by line with ``path``
    # (``derived/dialogues_topic_<split>.txt``, or ``dialogues_topic.txt`` next to ``dialogues_text.txt``).
    topics_path: str | None = None


@dataclass
class DataConfig:
    persona_sources: list[DataSource] = field(default_factory=list)
    general_sources: list[DataSource] = field(default_factory=list)
    num_personas: int = 3
    eval_fraction: float = 0.1
    # Two episodes belong to the same persona when they share at least this many persona sentences
    # with the persona's founding episode (see mturk_eval.data.personas).
    persona_min_shared: int = 3
    # General pairs: DailyDialog topic and length filter (both turns shorter than max_chars characters).
    general_topic: str = "Relationship"
    general_max_chars: int = 50
    # General pairs mixed into training per persona pair (English 1:1 -> 1.0, Japanese 1:10 -> 0.1).
    general_ratio: float = 1.0
    # Size of the general eval set (disjoint from every training mix).
    general_eval_size: int = 20
    # Cap persona eval items per persona (0 = all of the 10% split).
    max_persona_eval: int = 0


@dataclass
class TrainingConfig:
    num_virtual_tokens: int = 200
    prompt_lr: float = 1e-3
    finetune_lr: float = 5e-5
    batch_size: int = 8
    max_epochs: int = 30
    # Stop when the epoch's mean training loss has not improved by min_delta for `patience` epochs.
    patience: int = 2
    min_delta: float = 0.01
    max_length: int = 128
    # Use the model's chat template for the pair format when it has one (instruction models).
    chat_template: bool = False
    gradient_checkpointing: bool = False
    # auto: bfloat16 on CPUs with avx512_bf16/AMX and on GPUs that support it, else float32 (precision.py)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


@dataclass
class GenerationConfig:
    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    max_new_tokens: int = 40
    # End-of-turn tokens are blocked for the first min_new_tokens tokens (1: no empty responses).
    min_new_tokens: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    batch_size: int = 16
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # as training.dtype


@dataclass
class QualificationConfig:
    """A qualification requirement. ``type`` is a system name (locale, approval_rate, approved_hits,
    masters, adult) or a custom QualificationTypeId."""

    type: str
    comparator: str = "GreaterThanOrEqualTo"
    values: list[int] = field(default_factory=list)
    locales: list[str] = field(default_factory=list)
    actions_guarded: str = "DiscoverPreviewAndAccept"
    # A custom type's id on the sandbox (and the local emulator) where it differs from ``type``.
    sandbox_id: str | None = None


@dataclass
class HITConfig:
    title: str = "Rate a chatbot's response (persona dialogue)"
    description: str = "Read a persona, a message and a chatbot's reply, then rate the reply on four 5-point scales."
    keywords: str = "dialogue, chatbot, rating, persona, evaluation"
    reward: str = "0.05"
    assignments_per_hit: int = 5
    items_per_hit: int = 1
    assignment_duration_s: int = 600
    lifetime_s: int = 3 * 24 * 3600
    auto_approval_delay_s: int = 3 * 24 * 3600
    qualifications: list[QualificationConfig] = field(default_factory=list)
    attention_check_rate: float = 0.0
    template_dir: str | None = None
    max_cost: float | None = None
    # Concurrent CreateHIT calls and the rate limit they share (calls per second).
    publish_concurrency: int = 4
    publish_rate: float = 5.0


@dataclass
class AspectConfig:
    """A rated aspect for the report ([[report.aspects]]; checked by mturk_eval.analysis.aspects)."""

    name: str
    scale: list[int] = field(default_factory=lambda: [1, 5])
    table2: bool = True   # a column of Table 2/7 (means)
    table3: bool = False  # binned like Table 3/8 (any number of aspects, one Table 3 each)


@dataclass
class ReportConfig:
    # Persona-Chat's human reference row (fluency, engagingness, relevance): "mean (SD)" strings.
    human_reference: dict[str, str] = field(default_factory=dict)
    bootstrap_samples: int = 1000
    # Significance level of the tests between systems (after Holm correction).
    alpha: float = 0.05
    # Workers passing fewer than this share of their attention checks are excluded entirely
    # (assignments that failed their own check are always excluded).
    min_attention_pass_rate: float = 0.8
    # A worker rating the same item and aspect twice: "first" keeps the first rating and counts a
    # warning, "error" stops the report.
    duplicates: Literal["first", "error"] = "first"
    # Ratings each item should have; 0 means hit.assignments_per_hit. Items with fewer are listed.
    planned_ratings: int = 0
    # The rated aspects and their scales; empty = the paper's four on 1-5 (persona in Table 3).
    aspects: list[AspectConfig] = field(default_factory=list)
    # The aspects binned as Table 3/8, one table each, by name (these aspects of the config, the mapping
    # or the paper); unset = each aspect's own table3 mark, [] = no Table 3.
    table3_aspects: list[str] | None = None
    # Statistics (docs/report.md, "Tests" and "Confidence intervals"). Holm's family: every comparison of
    # one eval set (the paper's claims are per eval set) or of one eval set and aspect.
    holm_family: Literal["eval_set", "eval_set_aspect"] = "eval_set"
    # Intervals of means and differences: items and raters random (model-based), or items only (bootstrap).
    intervals: Literal["crossed", "item_bootstrap"] = "crossed"
    # The crossed mixed model per eval set and aspect; fitted on a subsample of whole items above this many
    # ratings per fit (0 = never subsample).
    mixed_model: bool = True
    mixed_model_max_ratings: int = 3000


@dataclass
class SiteConfig:
    """``[site]``: the rating site (``mturk-eval serve``)."""

    # The researcher's approved consent text (Markdown .md or HTML), shown before the first task.
    consent_file: str | None = None
    # A practice item with its answer explained before the first task (completion recorded).
    onboarding: bool = False
    # The address raters reach the site at (behind a reverse proxy: its https:// URL).
    public_url: str | None = None


@dataclass
class PlatformConfig:
    """``[platform]``: the crowd platform by registry name (mturk_eval.platforms.registry), and each
    platform's own settings as ``[platform.<name>]`` tables (checked by that platform's settings dataclass)."""

    name: str = "mturk"
    settings: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"internal": True})


@dataclass
class ExperimentConfig:
    name: str
    language: Literal["en", "ja"] = "en"
    seed: int = 42
    models: list[str] = field(default_factory=lambda: ["smollm2-135m"])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    hit: HITConfig = field(default_factory=HITConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    # Where runs/<name>/ lives; relative to the current directory.
    runs_dir: str = "runs"
    # Set by load_config: the file it came from and its raw text (not TOML keys).
    source_path: str | None = field(default=None, metadata={"internal": True})
    source_text: str | None = field(default=None, metadata={"internal": True})

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (for manifests), without the internal fields."""
        out = dataclasses.asdict(self)
        out.pop("source_path", None)
        out.pop("source_text", None)
        return out

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections (or of everything), for cache keys and manifests."""
        d = self.to_dict()
        if sections:
            d = {k: d[k] for k in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def default_data_dir(start: Path | None = None) -> Path | None:
    """``$MTURK_EVAL_DATA`` or the nearest ``shared/data`` beside an ancestor of ``start`` or the CWD."""
    env = os.environ.get("MTURK_EVAL_DATA")
    if env:
        return Path(env)
    for base in [start, Path.cwd()]:
        if base is None:
            continue
        for d in [base.resolve(), *base.resolve().parents]:
            cand = d.parent / "shared" / "data"
            if cand.is_dir():
                return cand
    return None


def expand_path(value: str, base_dir: Path, key: str, file: str) -> str:
    """Expand ``${VAR}`` (MTURK_EVAL_DATA has a default) and resolve relative to ``base_dir``."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in os.environ:
            return os.environ[name]
        if name == "MTURK_EVAL_DATA":
            d = default_data_dir(base_dir)
            if d is not None:
                return str(d)
            raise UserError(
                f"{file}: {key}: ${{MTURK_EVAL_DATA}} is not set and no ../shared/data was found; "
                "set MTURK_EVAL_DATA to the folder holding the data sets"
            )
        raise UserError(f"{file}: {key}: environment variable ${{{name}}} is not set")

    expanded = os.path.expanduser(_VAR.sub(sub, value))
    p = Path(expanded)
    if not p.is_absolute():
        p = base_dir / p
    return os.path.normpath(str(p))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "nothing"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, file: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, file)
            except UserError:
                continue  # try the next member; the error below names the whole union
        raise UserError(f"{file}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{file}: {key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{file}: {key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{file}: {key}: expected a table, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(v, val_tp, f"{key}.{k}", file) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{file}: {key}: expected a table, got {value!r}")
        return _build(tp, value, key, file)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{file}: {key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{file}: {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{file}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{file}: {key}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _suggest(key: str, fields: dict[str, Any], prefix: str, cls: type) -> str:
    """' (did you mean ...?; known keys here: ...)' for an unknown key."""
    if cls is ExperimentConfig and not prefix:
        # the top level mixes [experiment] keys with section names: list them apart
        sections = sorted(n for n in fields if dataclasses.is_dataclass(typing.get_type_hints(cls)[n]))
        known = f"sections: experiment, {', '.join(sections)}; [experiment] keys: " + ", ".join(
            sorted(n for n in fields if n not in sections))
        candidates = ["experiment", *fields]
    else:
        known = "known keys here: " + ", ".join(sorted(fields))
        candidates = list(fields)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?; " if close else ""
    return f" ({hint}{known})"


def _build(cls: type, data: dict[str, Any], prefix: str, file: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in fields:
            raise UserError(f"{file}: unknown key '{key}'{_suggest(k, fields, prefix, cls)}")
        kwargs[k] = _convert(v, hints[k], key, file)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise UserError(f"{file}: missing required key '{key}'")
    try:
        return cls(**kwargs)
    except UserError as exc:  # a section dataclass that validates itself (__post_init__)
        raise UserError(f"{file}: {exc.message}") from None


def build_section(cls: type, data: dict[str, Any], prefix: str, file: str) -> Any:
    """A config dataclass from a TOML table, with the loader's errors (unknown keys, types) naming
    ``file`` and ``prefix.key``; for sections that live outside this module (a platform's settings)."""
    return _build(cls, data, prefix, file)


def _platform_section(raw: Any, file: str) -> dict[str, Any]:
    """``[platform]``: ``name`` plus one ``[platform.<name>]`` table per registered platform."""
    from mturk_eval.platforms.registry import PLATFORMS, check_name

    if not isinstance(raw, dict):
        raise UserError(f"{file}: platform: expected a table, got {raw!r}")
    raw = dict(raw)
    name = raw.pop("name", "mturk")
    if not isinstance(name, str):
        raise UserError(f"{file}: platform.name: expected a string, got {name!r}")
    check_name(name, f"{file}: platform.name")
    settings = {}
    for k, v in raw.items():
        if k not in PLATFORMS or not isinstance(v, dict):
            raise UserError(f"{file}: unknown key 'platform.{k}' (known keys here: name, and a table per"
                            f" platform: {', '.join(sorted(PLATFORMS))})")
        settings[k] = v
    return {"name": name, "settings": settings}


def _check(cfg: ExperimentConfig, file: str) -> None:
    def bad(key: str, expected: str, got: Any) -> UserError:
        return UserError(f"{file}: {key}: expected {expected}, got {got!r}")

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cfg.name):
        raise bad("name", "letters, digits, '_', '.', '-'", cfg.name)
    for i, m in enumerate(cfg.methods):
        if m not in METHODS:
            raise bad(f"methods[{i}]", " or ".join(METHODS), m)
    if not cfg.models:
        raise bad("models", "at least one model", cfg.models)
    d = cfg.data
    for group, allowed in (("persona_sources", PERSONA_FORMATS), ("general_sources", GENERAL_FORMATS)):
        for i, src in enumerate(getattr(d, group)):
            if src.format not in allowed:
                raise bad(f"data.{group}[{i}].format", " or ".join(allowed), src.format)
    if d.num_personas < 1:
        raise bad("data.num_personas", "an integer >= 1", d.num_personas)
    if not 0.0 < d.eval_fraction < 1.0:
        raise bad("data.eval_fraction", "a number between 0 and 1", d.eval_fraction)
    if d.general_ratio < 0:
        raise bad("data.general_ratio", "a number >= 0", d.general_ratio)
    if d.persona_min_shared < 1:
        raise bad("data.persona_min_shared", "an integer >= 1", d.persona_min_shared)
    if d.general_max_chars < 1:
        raise bad("data.general_max_chars", "an integer >= 1", d.general_max_chars)
    if d.general_eval_size < 0:
        raise bad("data.general_eval_size", "an integer >= 0", d.general_eval_size)
    t = cfg.training
    if t.num_virtual_tokens < 1:
        raise bad("training.num_virtual_tokens", "an integer >= 1", t.num_virtual_tokens)
    if t.batch_size < 1:
        raise bad("training.batch_size", "an integer >= 1", t.batch_size)
    if t.max_epochs < 1:
        raise bad("training.max_epochs", "an integer >= 1", t.max_epochs)
    g = cfg.generation
    if g.max_new_tokens < 1:
        raise bad("generation.max_new_tokens", "an integer >= 1", g.max_new_tokens)
    if g.batch_size < 1:
        raise bad("generation.batch_size", "an integer >= 1", g.batch_size)
    h = cfg.hit
    if not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", h.reward):
        raise bad("hit.reward", "dollars as a string like \"0.05\"", h.reward)
    if not 1 <= h.assignments_per_hit <= 1000:
        raise bad("hit.assignments_per_hit", "an integer from 1 to 1000", h.assignments_per_hit)
    if h.items_per_hit < 1:
        raise bad("hit.items_per_hit", "an integer >= 1", h.items_per_hit)
    if not 0.0 <= h.attention_check_rate < 1.0:
        raise bad("hit.attention_check_rate", "a number in [0, 1)", h.attention_check_rate)
    if not 30 <= h.assignment_duration_s <= 31536000:
        raise bad("hit.assignment_duration_s", "seconds from 30 to 31536000", h.assignment_duration_s)
    if not 30 <= h.lifetime_s <= 31536000:
        raise bad("hit.lifetime_s", "seconds from 30 to 31536000", h.lifetime_s)
    if not 0 <= h.auto_approval_delay_s <= 2592000:
        raise bad("hit.auto_approval_delay_s", "seconds from 0 to 2592000", h.auto_approval_delay_s)
    if len(h.qualifications) > 10:
        raise bad("hit.qualifications", "at most 10 requirements (MTurk's limit)", len(h.qualifications))
    if h.template_dir and not Path(h.template_dir).is_dir():
        # Jinja would skip a missing folder and silently render the built-in template.
        why = "not a folder" if Path(h.template_dir).exists() else "folder not found"
        raise UserError(f"{file}: hit.template_dir: {h.template_dir}: {why}")


def parse_config(text: str, file: str = "<config>", base_dir: Path | None = None,
                 data_paths: bool = True) -> ExperimentConfig:
    """Parse TOML text into an :class:`ExperimentConfig`, expanding and resolving data paths. With
    ``data_paths=False`` (verbs that read no data, like ``plan``) a data source path whose variables do not
    resolve is kept as written instead of being an error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{file}: not valid TOML ({exc})") from None
    # [experiment] holds the top-level scalars; everything else is a section.
    flat: dict[str, Any] = dict(raw.pop("experiment", {}))
    for k in list(flat):
        if isinstance(flat[k], dict):
            raise UserError(f"{file}: unknown key 'experiment.{k}' (sections go at the top level)")
    for k, v in raw.items():
        if k in flat:
            raise UserError(f"{file}: key '{k}' given twice (in [experiment] and at the top level)")
        flat[k] = v
    platform = _platform_section(flat.pop("platform", {}), file)
    cfg = _build(ExperimentConfig, flat, "", file)
    cfg.platform = PlatformConfig(**platform)
    base = base_dir or Path.cwd()
    def data_path(value: str, key: str) -> str:
        try:
            return expand_path(value, base, key, file)
        except UserError:
            if data_paths:
                raise
            return value

    for group in ("persona_sources", "general_sources"):
        for i, src in enumerate(getattr(cfg.data, group)):
            src.path = data_path(src.path, f"data.{group}[{i}].path")
            if src.topics_path:
                src.topics_path = data_path(src.topics_path, f"data.{group}[{i}].topics_path")
    if cfg.hit.template_dir:
        cfg.hit.template_dir = expand_path(cfg.hit.template_dir, base, "hit.template_dir", file)
    if cfg.site.consent_file:
        cfg.site.consent_file = expand_path(cfg.site.consent_file, base, "site.consent_file", file)
    if cfg.site.public_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", cfg.site.public_url):
        raise UserError(f"{file}: site.public_url: expected an http(s):// URL, got {cfg.site.public_url!r}")
    _check(cfg, file)
    cfg.source_text = text
    return cfg


CONFIG_FILE = "mturk-eval.toml"
CONFIG_ENV = "MTURK_EVAL_CONFIG"


def find_config(explicit: str | os.PathLike | None = None, start: Path | None = None,
                required: bool = True) -> Path | None:
    """The experiment config a verb uses: ``explicit`` (``--config``), else ``$MTURK_EVAL_CONFIG``, else
    ``mturk-eval.toml`` in ``start`` (the current directory) or its nearest parent that has one. None
    (or, when ``required``, a one-line UserError naming both ways and ``mturk-eval init``) if none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for d in [here, *here.parents]:
        if (d / CONFIG_FILE).is_file():
            return d / CONFIG_FILE
    if not required:
        return None
    raise UserError(f"no experiment config: give --config FILE, set ${CONFIG_ENV}, or put {CONFIG_FILE} in this"
                    f" directory or a parent (`mturk-eval init` writes one)")


def load_config(path: str | os.PathLike, data_paths: bool = True) -> ExperimentConfig:
    """Read an experiment TOML file. Errors name the file and the key. ``data_paths=False``: for a verb
    that reads no data, unresolvable data source paths are not an error (:func:`parse_config`)."""
    path = Path(path)
    text = read_text(path)
    cfg = parse_config(text, str(path), base_dir=path.parent.resolve(), data_paths=data_paths)
    cfg.source_path = str(path)
    return cfg
