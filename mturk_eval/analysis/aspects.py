"""The rated aspects of a study: names, scales, and which appear in Table 2/7 (means) and Table 3/8
(per-response means in bins, one Table 3 per marked aspect). The paper's four on 1-5 are the default
(persona consideration alone in Table 3); a config's ``[[report.aspects]]`` or a batch mapping's
``[[aspects]]`` name others (``coherence`` on 1-4, ``humour`` on 1-7), and ``[report] table3_aspects``
chooses the binned ones by name (:func:`mark_table3`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable

from mturk_eval.config import ASPECTS
from mturk_eval.errors import UserError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
NAMES = {"fluency": "Fluency", "engagingness": "Engagingness", "relevance": "Relevance",
         "persona": "Persona consideration"}


@dataclass(frozen=True)
class Aspect:
    name: str
    low: int = 1
    high: int = 5
    table2: bool = True
    table3: bool = False

    @property
    def title(self) -> str:
        return NAMES.get(self.name, self.name.replace("_", " ").capitalize())

    @property
    def width(self) -> int:
        return self.high - self.low + 1

    @property
    def bins(self) -> tuple[str, ...]:
        """Unit-wide bins over the scale, the last closed: 1-5 gives [1,2) [2,3) [3,4) [4,5]."""
        return tuple(f"[{v},{v + 1})" for v in range(self.low, self.high - 1)) + (f"[{self.high - 1},{self.high}]",)

    @property
    def scale_text(self) -> str:
        return f"{self.low} to {self.high}"


PAPER_ASPECTS: tuple[Aspect, ...] = tuple(
    Aspect(a, 1, 5, table2=a != "persona", table3=a == "persona") for a in ASPECTS)


def check_aspects(specs: Iterable[Any], where: str) -> tuple[Aspect, ...]:
    """Aspects from config/mapping entries (objects or dicts with name, scale, table2, table3).
    ``where`` names the file and key for messages (``m.toml: aspects``)."""
    out: list[Aspect] = []
    for i, spec in enumerate(specs):
        get = spec.get if isinstance(spec, dict) else lambda k, d=None, s=spec: getattr(s, k, d)
        key = f"{where}[{i}]"
        name = get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(f"{key}.name: expected a name of letters, digits, '_' or '-' (starting with a "
                            f"letter, at most 40), got {name!r}")
        if any(a.name == name.lower() for a in out):
            raise UserError(f"{key}.name: expected each aspect once, got {name!r} again")
        scale = get("scale", [1, 5])
        if (not isinstance(scale, (list, tuple)) or len(scale) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in scale)
                or not scale[0] < scale[1] or scale[1] - scale[0] > 20):
            raise UserError(f"{key}.scale: expected [low, high], two integers with low < high (at most 21 "
                            f"points), got {scale!r}")
        t2, t3 = get("table2", True), get("table3", False)
        for k, v in (("table2", t2), ("table3", t3)):
            if not isinstance(v, bool):
                raise UserError(f"{key}.{k}: expected true or false, got {v!r}")
        out.append(Aspect(name.lower(), int(scale[0]), int(scale[1]), t2, t3))
    if not out:
        raise UserError(f"{where}: expected at least one aspect, got none")
    return tuple(out)


def mark_table3(aspects: tuple[Aspect, ...], names: Any, where: str) -> tuple[Aspect, ...]:
    """``aspects`` with exactly ``names`` binned as Table 3 (``[report] table3_aspects``); ``None`` keeps
    the aspects' own ``table3`` marks. ``where`` names the file and key for messages."""
    if names is None:
        return aspects
    known = [a.name for a in aspects]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{where}: expected a list of aspect names, got {names!r}")
    wanted: list[str] = []
    for n in names:
        name = n.strip().lower()
        if name not in known:
            raise UserError(f"{where}: expected names among the rated aspects ({', '.join(known)}), got {n!r}")
        if name in wanted:
            raise UserError(f"{where}: expected each aspect once, got {n!r} again")
        wanted.append(name)
    return tuple(replace(a, table3=a.name in wanted) for a in aspects)

def config_aspects(cfg: Any) -> tuple[Aspect, ...]:
    """The aspects of an experiment: ``[[report.aspects]]``, or the paper's four."""
    specs = getattr(getattr(cfg, "report", None), "aspects", None)
    if not specs:
        return PAPER_ASPECTS
    return check_aspects(specs, f"{getattr(cfg, 'source_path', None) or '<config>'}: report.aspects")
