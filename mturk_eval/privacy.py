"""Pseudonymous rater ids for everything that leaves the machine, and the checks around them.

Real rater ids (MTurk worker ids, Prolific participant ids, invite identities) are personal data. They
stay in the ledger (and the rating site's store); every export (the report folder, ``collect
--export-csv``, ratings CSV/Parquet) carries a pseudonym instead: a keyed hash, HMAC-SHA256 with a
per-experiment secret ``runs/<exp>/pseudonym.key`` (32 random bytes, hex, mode 0600, never printed or
logged). The same rater keeps the same pseudonym in every export of the experiment, so a researcher who
holds the key can still find a participant's rows when answering an access or deletion request
(``mturk-eval participants``); whoever only holds the exports cannot reverse it.

Pseudonyms read ``r-`` + 10 base32 characters (50 bits; a collision among 10,000 raters has odds below
1 in 10^7, and is refused if it ever happens), e.g. ``r-k3vq7m2xab``. Submission (assignment) ids,
which a platform can map to the person, get ``s-`` the same way in ``collect --export-csv``; in the
report they become opaque numbers ``s-000001``... (:func:`pseudonymise_ratings`).

Losing the key after pseudonyms were handed out would silently break the link between old and new
exports. So the key's public fingerprint (``key id``) is recorded in each of the experiment's ledgers
the first time it is used; when the key file is missing but a ledger records a key id, every export is
refused with one line saying how to restore it (or, if it is lost for good, how to make a new one on
purpose with ``mturk-eval participants new-key``). A key that does not match the recorded id is refused
the same way.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from mturk_eval.errors import UserError
from mturk_eval.tasks.answers import SIMULATED_FIELD

if TYPE_CHECKING:
    import pandas as pd

KEY_FILE = "pseudonym.key"
KEY_ID_META = "pseudonym_key_id"
PSEUDONYM_CHARS = 10
_B32_ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case
PSEUDONYM_RE = re.compile(r"^[rs]-[a-z2-7]{%d}$" % PSEUDONYM_CHARS)
RATER_PREFIX = "r-"
SUBMISSION_PREFIX = "s-"


class _LazyB32:
    """The base32 alphabet as a numpy array, built on first use (numpy is not needed for single ids)."""

    def __getitem__(self, idx: Any) -> Any:
        import numpy as np

        return np.frombuffer(_B32_ALPHABET, dtype=np.uint8)[idx]


_B32 = _LazyB32()


def key_path(run_dir: str | os.PathLike) -> Path:
    """``runs/<exp>/pseudonym.key``: the one place of the experiment's secret."""
    return Path(run_dir) / KEY_FILE


def is_pseudonym(value: Any) -> bool:
    """Whether ``value`` has the form of a pseudonym made here (``r-``/``s-`` + 10 base32 letters)."""
    return isinstance(value, str) and PSEUDONYM_RE.match(value) is not None


def key_id_of(key: bytes) -> str:
    """The key's public fingerprint (16 hex digits), recorded in the ledgers and shown in report.json."""
    return hmac.new(key, b"mturk-eval pseudonym key id", hashlib.sha256).hexdigest()[:16]


def _ledger_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("ledger.*.sqlite"))


def _recorded_key_ids(run_dir: Path) -> dict[Path, str]:
    """Key ids recorded in the experiment's ledgers (read-only; a ledger without a meta table or the
    key has none)."""
    out: dict[Path, str] = {}
    for p in _ledger_files(run_dir):
        try:
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30.0)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key=?", (KEY_ID_META,)).fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            continue  # not a readable ledger: the verb that opens it says so
        if row is not None:
            out[p] = row[0]
    return out


def _recordkey_id_of(run_dir: Path, key_id: str) -> None:
    for p in _ledger_files(run_dir):
        try:
            conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None)
            try:
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (KEY_ID_META, key_id))
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            continue


def _restore_hint(path: Path) -> str:
    away = f" (after moving {path.name} away)" if path.exists() else ""
    return (f"restore it from your backup (the 64-hex-digit file, then `chmod 600 {path}`); if it is lost for "
            f"good, `mturk-eval participants new-key`{away} makes a new one, and pseudonyms in earlier exports "
            "then no longer match the new ones")


def _read_key(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & 0o077:
        raise UserError(f"{path}: permissions {stat.S_IMODE(st.st_mode):04o}, expected 0600 (it is a secret); "
                        f"run `chmod 600 {path}`")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise UserError(f"{path}: expected 64 hex digits (the experiment's pseudonym key), got a file of "
                        f"{len(text)} characters that is not one; {_restore_hint(path)}")
    return bytes.fromhex(text)


def write_new_key(path: Path) -> bytes:
    """Create the key file with mode 0600 (never wider, whatever the umask); refuses to replace one.

    Written to a private temporary file first and linked into place, so a crash leaves either no key
    or the whole key, and two processes racing cannot both win."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key(path)  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    return key


def write_private_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically to a file only its owner can read (mode 0600 from the first byte)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Pseudonymiser:
    """Maps real ids to pseudonyms with one key. Make it with :meth:`for_run` (the experiment's key)
    or :meth:`one_off` (a random key kept nowhere, for reports made without an experiment)."""

    key: bytes = field(repr=False)
    key_id: str
    stored: bool = True      # False for a one-off key

    def __repr__(self) -> str:  # never show the key, even in a traceback's locals
        return f"Pseudonymiser(key_id={self.key_id!r}, stored={self.stored})"

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike, *, record: bool = True) -> "Pseudonymiser":
        """The experiment's pseudonymiser. Creates the key when the experiment never had one; refuses
        (one line, exit 2) a missing key that a ledger says was used, a key that is not the recorded
        one, and a key file readable by others. With ``record`` the key id is written into the
        experiment's ledgers that do not hold it yet."""
        run_dir = Path(run_dir)
        path = key_path(run_dir)
        recorded = _recorded_key_ids(run_dir)
        if path.exists():
            key = _read_key(path)
            kid = key_id_of(key)
            for ledger, have in recorded.items():
                if have != kid:
                    raise UserError(
                        f"{path}: not the key this experiment's pseudonyms were made with (key id {kid}; "
                        f"{ledger.name} records {have}); {_restore_hint(path)}")
        else:
            if recorded:
                ledger = next(iter(recorded))
                raise UserError(
                    f"{path}: missing, and {ledger.name} records that its pseudonyms were made with it "
                    f"(key id {recorded[ledger]}); nothing exported; {_restore_hint(path)}")
            key = write_new_key(path)
            kid = key_id_of(key)
        if record and len(recorded) < len(_ledger_files(run_dir)):
            _recordkey_id_of(run_dir, kid)
        return cls(key=key, key_id=kid)

    @classmethod
    def one_off(cls) -> "Pseudonymiser":
        key = secrets.token_bytes(32)
        return cls(key=key, key_id=key_id_of(key), stored=False)

    # ------------------------------------------------------------------ mapping
    def _hash(self, prefix: str, value: str) -> str:
        digest = hmac.new(self.key, prefix.encode() + b"\0" + str(value).encode("utf-8"), hashlib.sha256).digest()
        return prefix + base64.b32encode(digest).decode("ascii")[:PSEUDONYM_CHARS].lower()

    def rater(self, rater_id: str) -> str:
        """The pseudonym of one rater id (``r-`` + 10 base32 letters)."""
        return self._hash(RATER_PREFIX, rater_id)

    def submission(self, submission_id: str) -> str:
        """The pseudonym of one submission (assignment) id (``s-`` + 10 base32 letters)."""
        return self._hash(SUBMISSION_PREFIX, submission_id)

    def _hash_many(self, prefix: str, values: list[str]) -> list[str]:
        """``_hash`` of many values, equal to it value by value but about 5x faster (a report may hold a
        million submission ids): HMAC-SHA256 written out with hashlib's pre-keyed copies, then the first
        50 bits of each digest turned into base32 letters with numpy."""
        import numpy as np

        block = self.key.ljust(64, b"\0")  # HMAC's key block for SHA-256 (the key is 32 bytes)
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + prefix.encode() + b"\0")
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        heads = bytearray()
        for v in values:
            i = inner.copy()
            i.update(str(v).encode("utf-8"))
            o = outer.copy()
            o.update(i.digest())
            heads += o.digest()[:8]
        top = np.frombuffer(bytes(heads), dtype=">u8").astype(np.uint64)
        shifts = np.arange(64 - 5, 64 - 5 * (PSEUDONYM_CHARS + 1), -5, dtype=np.uint64)
        letters = _B32[((top[:, None] >> shifts) & np.uint64(31)).astype(np.intp)]
        return [prefix + s for s in np.ascontiguousarray(letters).view(f"S{PSEUDONYM_CHARS}").ravel()
                .astype(f"U{PSEUDONYM_CHARS}").tolist()]

    def _many(self, prefix: str, ids: Iterable[Any], keep_pseudonyms: bool, distinct: bool = False) -> list[Any]:
        """Pseudonyms of ``ids`` in order; each distinct id hashed once (``distinct``: the caller knows
        there are no repeats, as in a vocabulary of codes). Missing values, and with ``keep_pseudonyms``
        ids that already are pseudonyms, stay as they are."""
        ids = list(ids)
        uniq = ids if distinct else list(dict.fromkeys(ids))
        todo = [k for k, v in enumerate(uniq) if not (v is None or v == "" or (isinstance(v, float) and v != v)
                                                      or (keep_pseudonyms and is_pseudonym(v)))]
        values = [uniq[k] for k in todo]
        hashed = self._hash_many(prefix, values) if len(values) > 64 else [self._hash(prefix, v) for v in values]
        if len(set(hashed)) != len(hashed):  # 50 bits: practically never; refuse rather than merge two people
            raise UserError("pseudonyms: two ids map to the same pseudonym; this should never happen, please "
                            "report it")
        out = list(uniq)
        for k, h in zip(todo, hashed):
            out[k] = h
        if distinct:
            return out
        mapping = dict(zip(uniq, out))
        return [mapping[v] for v in ids]

    def raters(self, ids: Iterable[Any], *, keep_pseudonyms: bool = False, distinct: bool = False) -> list[Any]:
        """Pseudonyms of many rater ids, in order (each distinct id hashed once). With
        ``keep_pseudonyms`` ids that already are pseudonyms (an earlier export read back) stay."""
        return self._many(RATER_PREFIX, ids, keep_pseudonyms, distinct)

    def submissions(self, ids: Iterable[Any], *, keep_pseudonyms: bool = False, distinct: bool = False) -> list[Any]:
        return self._many(SUBMISSION_PREFIX, ids, keep_pseudonyms, distinct)

    def series(self, s: "pd.Series", kind: str = "rater", *, keep_pseudonyms: bool = False) -> "pd.Series":
        """A pandas Series of ids mapped to pseudonyms: each distinct value hashed once (``pd.factorize``),
        missing values kept, index and name unchanged."""
        import numpy as np
        import pandas as pd

        if kind not in ("rater", "submission"):
            raise ValueError(f"kind: expected 'rater' or 'submission', got {kind!r}")
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        mapped = np.array(self._many(RATER_PREFIX if kind == "rater" else SUBMISSION_PREFIX,
                                     list(uniques), keep_pseudonyms, distinct=True) + [None], dtype=object)
        values = mapped[codes]
        missing = codes < 0
        if missing.any():
            values[missing] = s.to_numpy(dtype=object)[missing]  # missing stays as it was (None, NaN)
        return pd.Series(values, index=s.index, name=s.name, dtype=object)

    def find(self, value: str, candidates: Iterable[str]) -> str | None:
        """The real id among ``candidates`` that is ``value`` or whose pseudonym is ``value``."""
        cands = list(dict.fromkeys(candidates))
        if value in cands:
            return value
        if is_pseudonym(value):
            for c in cands:
                if self.rater(c) == value:
                    return c
        return None


def pseudonymise_batch_rows(rows: list[dict[str, Any]], p: Pseudonymiser) -> list[dict[str, Any]]:
    """MTurk batch-results rows (``collect --export-csv``) with ``WorkerId`` and ``AssignmentId``
    replaced by pseudonyms (new dicts; the input is left as it is)."""
    workers = p.raters([r.get("WorkerId", "") for r in rows], keep_pseudonyms=True)
    subs = p.submissions([r.get("AssignmentId", "") for r in rows], keep_pseudonyms=True)
    return [{**r, "WorkerId": w, "AssignmentId": s} for r, w, s in zip(rows, workers, subs)]


# --------------------------------------------------------------------------------------------------
# Free text: a form field that is not a 1..N rating may hold anything a participant typed, names included.

RATING_FIELD_RE = re.compile(r"^i\d+_[A-Za-z0-9_]+$")
# Fields the toolkit's own pages send that carry no participant text.
MACHINE_FIELDS = frozenset({"assignmentId", SIMULATED_FIELD, "csrf_token", "hitId", "workerId",
                            "turkSubmitTo"})


def form_free_text_fields(html: str) -> list[str]:
    """Names of the form fields in a rendered rating page that are not 1..N rating choices: text
    inputs, text areas, selects and radio/checkbox groups whose values are not the integers 1..N.
    Hidden fields and the toolkit's machine fields are not answers and are left out."""
    from lxml import html as lhtml

    doc = lhtml.fromstring(html)
    groups: dict[str, list[str]] = {}
    free: dict[str, None] = {}
    for el in doc.iter("input", "textarea", "select"):
        name = el.get("name")
        if not name or name in MACHINE_FIELDS:
            continue
        kind = (el.get("type") or "text").lower() if el.tag == "input" else el.tag
        if kind in ("hidden", "submit", "button", "reset", "image"):
            continue
        if kind in ("radio", "checkbox"):
            groups.setdefault(name, []).append(el.get("value") or "")
        elif kind == "select":
            values = [o.get("value", o.text_content()).strip() for o in el.iter("option")]
            groups.setdefault(name, []).extend(v for v in values if v)
        else:
            free.setdefault(name)
    for name, values in groups.items():
        try:
            nums = sorted(int(v) for v in values)
        except ValueError:
            free.setdefault(name)
            continue
        if nums != list(range(1, len(nums) + 1)) or len(nums) < 2:
            free.setdefault(name)
    return list(free)


def answer_free_text_fields(fields: dict[str, str]) -> list[str]:
    """Fields of one stored answer that are neither ratings (``i{k}_{aspect}`` with an integer value)
    nor machine fields, and are not empty."""
    out = []
    for name, value in fields.items():
        if name in MACHINE_FIELDS or not str(value).strip():
            continue
        if RATING_FIELD_RE.match(name) and str(value).strip().isdigit():
            continue
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------------
# The report's use of all this (called from mturk_eval.analysis.report.build_report, in one place).


def report_pseudonymiser(cfg: Any, *, from_ledger: bool) -> Pseudonymiser:
    """The experiment's key when there is an experiment (a config file, or the ledger); a one-off key
    for a report made from a ratings or batch file without ``--config`` (its pseudonyms then match no
    other export, which is the most private choice when no key exists to keep them stable)."""
    if from_ledger or cfg.source_path is not None:
        return Pseudonymiser.for_run(cfg.run_dir)
    return Pseudonymiser.one_off()


def submission_numbers(n: int) -> list[str]:
    """Opaque submission ids for a report: ``s-000001``, ``s-000002``, ... (at least six digits)."""
    import numpy as np

    width = max(6, len(str(n)))
    if n <= 0:
        return []
    # The digits of every number at once, one "s-ddddddd" line each, split into strings in C: half the
    # time of map() over the bound %-format (0.10 against 0.19 s for a million ids); the same strings.
    k = np.arange(1, n + 1, dtype=np.int64)
    text = np.empty((n, width + 3), dtype=np.uint8)
    text[:, 0], text[:, 1], text[:, -1] = ord("s"), ord("-"), ord("\n")
    for j in range(width + 1, 1, -1):
        text[:, j] = k % 10 + ord("0")
        k //= 10
    return text.tobytes()[:-1].decode("ascii").split("\n")


@dataclass
class ReportPrivacy:
    """What :func:`report_privacy` did: ``info`` goes into ``report.json`` (key ``privacy``) and report.md;
    ``original_submissions`` (the replaced submission ids, in code order) lets ledger data keyed by
    submission, the bonuses, follow the renumbering."""

    info: dict[str, Any]
    original_submissions: list[Any] = field(default_factory=list, repr=False)

    def rekey_spend(self, spend: Any) -> Any:
        """``spend`` (:class:`mturk_eval.analysis.cost.Spend`) with its per-submission bonuses keyed by the
        report's submission numbers; returned for chaining."""
        if spend is not None and spend.bonus_by_assignment:
            number = dict(zip(self.original_submissions, submission_numbers(len(self.original_submissions))))
            spend.bonus_by_assignment = {number[a]: v for a, v in spend.bonus_by_assignment.items() if a in number}
        return spend


def pseudonymise_ratings(ratings: Any, cfg: Any, *, from_ledger: bool) -> ReportPrivacy:
    """Replace the rater and submission ids of loaded ratings, in place.

    Rater ids become keyed pseudonyms (``r-...``; ids read from a file that already are pseudonyms, an
    earlier export, stay). Submission (assignment) ids only group a submission's rows in the analysis;
    they become opaque numbers ``s-000001``... in order of first appearance: linked to nothing outside
    the report, and cheap for a million submissions (a keyed hash of each would cost about a second).

    ``ratings`` is the analysis' columnar :class:`~mturk_eval.analysis.ratings.Ratings` (lists
    ``worker_ids``/``assignment_ids``) or a long-format pandas DataFrame (columns ``worker_id``,
    ``assignment_id``)."""
    p = report_pseudonymiser(cfg, from_ledger=from_ledger)
    keep = not from_ledger
    if hasattr(ratings, "worker_ids"):
        original = ratings.assignment_ids
        ratings.worker_ids = p.raters(ratings.worker_ids, keep_pseudonyms=keep, distinct=True)  # a vocabulary
        ratings.assignment_ids = submission_numbers(len(original))
    else:
        import pandas as pd

        ratings["worker_id"] = p.series(ratings["worker_id"], "rater", keep_pseudonyms=keep)
        original = []
        if "assignment_id" in ratings:
            codes, uniques = pd.factorize(ratings["assignment_id"])
            original = list(uniques)
            ratings["assignment_id"] = pd.Series(submission_numbers(len(original)), dtype=object).to_numpy()[codes]
    return ReportPrivacy({
        "rater_ids": "pseudonymised",
        "key": "experiment" if p.stored else "one-off",
        "key_id": p.key_id if p.stored else None,
        "note": ("rater ids are pseudonyms (r-...), HMAC-SHA256 with "
                 + (f"the experiment's key (key id {p.key_id}), stable across its exports"
                    if p.stored else "a one-off key (no --config), matching no other export")
                 + "; submission ids are opaque numbers (s-000001, ...) that link to nothing outside this report"),
    }, original)


def report_privacy(ratings: Any, cfg: Any, ledger_path: str | os.PathLike | None,
                   free_text: dict[str, Any] | None = None) -> ReportPrivacy:
    """The report's one privacy step, right after loading: pseudonymise ``ratings`` in place (the
    experiment's key when read from the ledger ``ledger_path`` or with a config) and look for free text
    (the template's fields; with the ledger, the stored answers), or take ``free_text``, what
    :func:`free_text_notes` gave for the same config and ledger (the report computes it while it reads)."""
    out = pseudonymise_ratings(ratings, cfg, from_ledger=ledger_path is not None)
    out.info.update(free_text_notes(cfg, ledger_path) if free_text is None else free_text)
    return out


def template_free_text_fields(cfg: Any) -> list[str]:
    """Free-text fields of the experiment's rating page (its template rendered for one sample item)."""
    from mturk_eval.tasks.builder import render_html

    item = {"persona": ["sample"], "utterance": "sample", "response": "sample"}
    html = render_html([item], cfg.language, "https://example.invalid/", cfg.hit.template_dir)
    return form_free_text_fields(html)


def ledger_free_text_counts(ledger_path: str | os.PathLike) -> dict[str, int]:
    """Field name -> number of stored submissions whose answer holds non-empty free text there."""
    from mturk_eval.ledger import Ledger

    counts: dict[str, int] = {}
    with Ledger.open(ledger_path, create=False) as led:
        for fields in led.answer_fields():
            for name in answer_free_text_fields(fields):
                counts[name] = counts.get(name, 0) + 1
    return counts


def free_text_notes(cfg: Any, ledger_path: str | os.PathLike | None) -> dict[str, Any]:
    """What the report flags about free text: the template's free-text fields and, from the ledger, how
    many submissions hold text in them; ``warning`` is set when either is non-empty."""
    try:
        template_fields = template_free_text_fields(cfg)
        template_error = None
    except UserError as exc:
        template_fields, template_error = [], exc.message
    answers = ledger_free_text_counts(ledger_path) if ledger_path is not None else {}
    out: dict[str, Any] = {"free_text_fields": template_fields, "free_text_answers": answers}
    if template_error:
        out["template_check"] = f"the rating template could not be checked: {template_error}"
    names = list(dict.fromkeys([*template_fields, *answers]))
    if names:
        held = ", ".join(f"{k}: {v} submission(s)" for k, v in answers.items()) or "none collected yet"
        out["warning"] = (
            f"POSSIBLY IDENTIFYING: free-text answer field(s) {', '.join(names)} (not a 1..N rating); "
            f"text held in the ledger: {held}. Participants may type names or other personal details there: "
            "the report leaves them out, but `collect --export-csv` carries them as Answer.* columns; read "
            "them before sharing anything.")
    return out


def privacy_markdown(privacy: dict[str, Any]) -> str:
    """The report.md section saying how rater ids were pseudonymised and what free text exists."""
    lines = ["", "## Participants' privacy", "", f"- {privacy['note'][0].upper()}{privacy['note'][1:]}."]
    if privacy.get("warning"):
        lines.append(f"- **{privacy['warning']}**")
    else:
        lines.append("- Free text: the rating page has no free-text field (every answer is a 1..N rating).")
    if privacy.get("template_check"):
        lines.append(f"- {privacy['template_check']}")
    return "\n".join(lines) + "\n"
