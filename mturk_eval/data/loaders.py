"""Readers for the dialogue corpora, each turning a file into episodes of (utterance, response) pairs.

Supported formats (``DataSource.format``):

- ``convai2``: ParlAI/ConvAI2 ``*_self_original_no_cands.txt`` / ``*_self_revised_no_cands.txt``. Each
  episode restarts at line number 1; ``N your persona: <sentence>`` lines give the responder's persona
  (``partner's persona:`` lines of the "both" files are skipped); ``N <partner>\\t<responder>`` lines give
  one pair each.
- ``xpersona``: a JSON list of ``{"persona": [...], "dialogue": [[partner, responder], ...]}``; turns whose
  partner side is ``__SILENCE__`` (the responder spoke first) are dropped, not paired.
- ``synthetic``: Synthetic-Persona-Chat CSV (``user 1 personas``, ``user 2 personas``, ``Best Generated
  Conversation``); both speakers become responders, each with their own persona.
- ``jsonl``: generic, one pair per line ``{"persona": [sentences], "utterance": ..., "response": ...}``
  (optional ``dialogue_id`` groups lines into one episode), for any language or corpus.
- ``dailydialog`` (general pairs): one dialogue per line, turns separated by ``__eou__``, with a topic file
  aligned line by line. Each dialogue yields round trips (turn 0, turn 1), (turn 2, turn 3), ...

Every malformed input raises a UserError naming the file and line.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mturk_eval.config import DataSource
from mturk_eval.errors import UserError, where
from mturk_eval.io import iter_jsonl, read_text

DAILYDIALOG_TOPICS = {
    1: "Ordinary Life",
    2: "School Life",
    3: "Culture & Education",
    4: "Attitude & Emotion",
    5: "Relationship",
    6: "Tourism",
    7: "Health",
    8: "Work",
    9: "Politics",
    10: "Finance",
}


@dataclass
class Episode:
    """One dialogue seen from one responder: their persona and their (partner, responder) pairs."""

    persona: list[str]
    pairs: list[tuple[str, str]]
    source: str  # "<file>:<line>" where the episode starts


@dataclass
class GeneralPair:
    utterance: str
    response: str
    topic: int | None
    source: str  # "<file>:<line>"


@dataclass
class _EpisodeBuilder:
    start_line: int
    persona: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


def _clean(text: str) -> str:
    return " ".join(text.split())


def load_convai2(path: str | Path) -> list[Episode]:
    text = read_text(path)
    episodes: list[Episode] = []
    current: _EpisodeBuilder | None = None
    line_re = re.compile(r"^(\d+) (.*)$")

    def close(ep: _EpisodeBuilder | None) -> None:
        if ep is None:
            return
        if not ep.persona:
            raise UserError(f"{where(path, ep.start_line)}: episode has no 'your persona:' lines (empty persona)")
        if not ep.pairs:
            raise UserError(f"{where(path, ep.start_line)}: episode has a persona but no dialogue lines")
        episodes.append(Episode(ep.persona, ep.pairs, f"{path}:{ep.start_line}"))

    prev_num = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        m = line_re.match(raw)
        if not m:
            raise UserError(
                f"{where(path, lineno)}: expected '<number> <text>' (ParlAI format), got {raw[:60]!r}"
            )
        num, body = int(m.group(1)), m.group(2)
        if num == 1:
            close(current)
            current = _EpisodeBuilder(start_line=lineno)
        elif current is None or num != prev_num + 1:
            raise UserError(
                f"{where(path, lineno)}: line number {num} does not continue the episode "
                f"(expected {prev_num + 1} or 1 to start a new episode)"
            )
        prev_num = num
        if body.startswith("your persona:"):
            sentence = _clean(body[len("your persona:"):])
            if not sentence:
                raise UserError(f"{where(path, lineno)}: empty persona sentence")
            current.persona.append(sentence)
        elif body.startswith("partner's persona:"):
            continue
        else:
            parts = body.split("\t")
            if len(parts) < 2:
                raise UserError(
                    f"{where(path, lineno)}: expected '<partner utterance>TAB<responder utterance>', found no TAB"
                )
            utt, resp = _clean(parts[0]), _clean(parts[1])
            if not utt or not resp:
                raise UserError(f"{where(path, lineno)}: empty utterance or response")
            current.pairs.append((utt, resp))
    close(current)
    if not episodes:
        raise UserError(f"{path}: no episodes found (expected ParlAI '1 your persona: ...' lines)")
    return episodes


def load_xpersona(path: str | Path) -> list[Episode]:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(path, exc.lineno)}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of dialogues, got {type(data).__name__}")
    episodes = []
    for i, d in enumerate(data):
        loc = f"{path}: dialogue {i}"
        if not isinstance(d, dict) or "persona" not in d or "dialogue" not in d:
            raise UserError(f"{loc}: expected an object with 'persona' and 'dialogue'")
        persona = _persona_field(d["persona"], loc)
        pairs = []
        for j, turn in enumerate(d["dialogue"]):
            if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise UserError(f"{loc}, turn {j}: expected [partner, responder] strings")
            utt, resp = _clean(turn[0]), _clean(turn[1])
            if utt == "__SILENCE__" or not utt or not resp:
                continue
            pairs.append((utt, resp))
        if pairs:
            episodes.append(Episode(persona, pairs, f"{path}#{i}"))
    if not episodes:
        raise UserError(f"{path}: no dialogues with pairs found")
    return episodes


def load_synthetic(path: str | Path, warnings: list[str] | None = None) -> list[Episode]:
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    need = ["user 1 personas", "user 2 personas", "Best Generated Conversation"]
    missing = [c for c in need if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)} (Synthetic-Persona-Chat CSV)")
    episodes = []
    for row_no, row in enumerate(reader, start=2):
        loc = f"{path}: row {row_no}"
        personas = {
            "User 1": [_clean(s) for s in (row["user 1 personas"] or "").splitlines() if _clean(s)],
            "User 2": [_clean(s) for s in (row["user 2 personas"] or "").splitlines() if _clean(s)],
        }
        turns: list[tuple[str, str]] = []
        for line in (row["Best Generated Conversation"] or "").splitlines():
            line = line.strip()
            if not line or re.fullmatch(r"[*_\-\s]+", line):  # blank or a markdown rule like '* * *'
                continue
            # Some conversations are in markdown: '*User 1:* text' or '* User 2: text'.
            m = re.match(r"^[*\s]*(User [12])[*\s]*:[*\s]*(.*)$", line)
            if m:
                turns.append((m.group(1), _clean(m.group(2))))
            elif turns:  # continuation of the previous turn
                turns[-1] = (turns[-1][0], _clean(turns[-1][1] + " " + line))
            else:
                turns = []
                break
        if not turns:
            # The released CSV has a conversation without speaker labels (validation row 485): its turns
            # cannot be attributed to a persona, so it is skipped and counted, not guessed.
            if warnings is None:
                raise UserError(f"{loc}: conversation line does not start with 'User 1:' or 'User 2:'")
            warnings.append(f"{loc}: skipped, conversation has no 'User 1:'/'User 2:' speaker labels")
            continue
        for speaker in ("User 1", "User 2"):
            if not personas[speaker]:
                raise UserError(f"{loc}: empty persona for {speaker}")
            pairs = [
                (turns[k - 1][1], turns[k][1])
                for k in range(1, len(turns))
                if turns[k][0] == speaker and turns[k - 1][0] != speaker and turns[k - 1][1] and turns[k][1]
            ]
            if pairs:
                episodes.append(Episode(personas[speaker], pairs, f"{path}:{row_no}:{speaker}"))
    if not episodes:
        raise UserError(f"{path}: no conversations found")
    return episodes


def load_persona_jsonl(path: str | Path) -> list[Episode]:
    episodes: dict[str, Episode] = {}
    for lineno, obj in iter_jsonl(path):
        loc = where(path, lineno)
        for key in ("persona", "utterance", "response"):
            if key not in obj:
                raise UserError(f"{loc}: missing field '{key}'")
        persona = _persona_field(obj["persona"], loc)
        utterance, response = _pair_fields(obj, loc)
        dialogue_id = str(obj.get("dialogue_id", "\x00".join(persona)))
        ep = episodes.get(dialogue_id)
        if ep is None:
            ep = episodes[dialogue_id] = Episode(persona, [], f"{path}:{lineno}")
        elif ep.persona != persona:
            raise UserError(f"{loc}: dialogue_id {dialogue_id!r} has a different persona than its first line")
        ep.pairs.append((utterance, response))
    if not episodes:
        raise UserError(f"{path}: no lines found (expected JSONL with persona, utterance, response)")
    return list(episodes.values())


def _persona_field(value: object, loc: str) -> list[str]:
    """A ``persona`` value: a non-empty list of sentences, cleaned."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise UserError(f"{loc}: field 'persona' must be a list of sentences")
    persona = [_clean(s) for s in value if _clean(s)]
    if not persona:
        raise UserError(f"{loc}: field 'persona' is empty")
    return persona


def _pair_fields(obj: dict, loc: str) -> tuple[str, str]:
    """The cleaned ``utterance`` and ``response`` of a JSONL line, both required non-empty strings."""
    for key in ("utterance", "response"):
        if key not in obj:
            raise UserError(f"{loc}: missing field '{key}'")
        if not isinstance(obj[key], str) or not _clean(obj[key]):
            raise UserError(f"{loc}: field '{key}' must be a non-empty string")
    return _clean(obj["utterance"]), _clean(obj["response"])


PERSONA_LOADERS = {
    "convai2": load_convai2,
    "xpersona": load_xpersona,
    "synthetic": load_synthetic,
    "jsonl": load_persona_jsonl,
}


def load_persona_source(src: DataSource, warnings: list[str] | None = None) -> list[Episode]:
    if src.format == "synthetic":
        return load_synthetic(src.path, warnings)
    return PERSONA_LOADERS[src.format](src.path)


def _infer_topics_path(path: Path) -> Path | None:
    """Find the topic labels for a DailyDialog dialogue file.

    ``dialogues_text.txt`` -> ``dialogues_topic.txt`` beside it; ``<split>/dialogues_<split>.txt`` ->
    ``derived/dialogues_topic_<split>.txt`` (the layout of ../shared/data/dailydialog).
    """
    if path.name == "dialogues_text.txt":
        return path.with_name("dialogues_topic.txt")
    m = re.fullmatch(r"dialogues_(train|validation|test)\.txt", path.name)
    if m:
        for cand in (
            path.parent / f"dialogues_topic_{m.group(1)}.txt",
            path.parent.parent.parent / "derived" / f"dialogues_topic_{m.group(1)}.txt",
        ):
            if cand.exists():
                return cand
    return None


def load_dailydialog(src: DataSource) -> list[GeneralPair]:
    path = Path(src.path)
    text = read_text(path)
    topics_path = Path(src.topics_path) if src.topics_path else _infer_topics_path(path)
    topics: list[int] | None = None
    if topics_path is not None:
        topic_lines = [ln for ln in read_text(topics_path).splitlines()]
        while topic_lines and not topic_lines[-1].strip():
            topic_lines.pop()
        topics = []
        for i, t in enumerate(topic_lines, start=1):
            try:
                topics.append(int(t.strip()))
            except ValueError:
                raise UserError(f"{where(topics_path, i)}: expected a topic number 1-10, got {t[:30]!r}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if topics is not None and len(topics) != len(lines):
        raise UserError(
            f"{topics_path}: has {len(topics)} topic lines but {path} has {len(lines)} dialogues; "
            "the topic file must be aligned line by line with the dialogue file"
        )
    pairs = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise UserError(f"{where(path, lineno)}: empty dialogue line")
        if "__eou__" not in line:
            raise UserError(f"{where(path, lineno)}: expected turns separated by '__eou__'")
        turns = [_clean(t) for t in line.split("__eou__")]
        turns = [t for t in turns if t]
        topic = topics[lineno - 1] if topics is not None else None
        for k in range(0, len(turns) - 1, 2):
            pairs.append(GeneralPair(turns[k], turns[k + 1], topic, f"{path}:{lineno}"))
    return pairs


def load_general_jsonl(src: DataSource) -> list[GeneralPair]:
    pairs = []
    for lineno, obj in iter_jsonl(src.path):
        utterance, response = _pair_fields(obj, where(src.path, lineno))
        pairs.append(GeneralPair(utterance, response, obj.get("topic"), f"{src.path}:{lineno}"))
    if not pairs:
        raise UserError(f"{src.path}: no lines found (expected JSONL with utterance, response)")
    return pairs


def load_general_source(src: DataSource) -> list[GeneralPair]:
    if src.format == "dailydialog":
        return load_dailydialog(src)
    return load_general_jsonl(src)


def topic_key(topic: str | int | None) -> str | None:
    """Canonical form of a topic for comparison: DailyDialog numbers map to their names, case folded.

    So ``5``, ``"5"`` and ``"relationship"`` all match the configured ``general_topic = "Relationship"``.
    """
    if topic is None:
        return None
    if isinstance(topic, int) or str(topic).strip().isdigit():
        return DAILYDIALOG_TOPICS.get(int(topic), str(topic)).casefold()
    return str(topic).strip().casefold()
