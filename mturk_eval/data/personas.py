"""Grouping episodes into personas by persona-sentence overlap.

ConvAI2 shows each episode a 4-5 sentence subset (or a revision) of an original persona, so episodes of
one persona rarely carry identical sentence sets. The rule, deterministic and free of chaining:

1. Sentences are compared after normalisation (lower case, whitespace collapsed, a trailing full stop
   dropped, spaces before punctuation removed).
2. The distinct sentence sets are ordered: more sentences first, then more pairs, then the sorted
   sentences as text. That order does not depend on the order of the input files.
3. Each set in turn joins the existing persona whose *founding set* (its anchor) shares the most
   sentences with it, if that is at least ``min_shared``; ties go to the persona founded first. Otherwise
   it founds a new persona.

Membership is tested against the anchor only, never against the growing union of a persona's sentences
or against other members, so two unrelated personas cannot be chained together through a set that
overlaps both: every member shares at least ``min_shared`` sentences with the one anchor.

A persona's sentences are the sentences of its member episodes, the most frequent first (ties in the
order they were first seen in the anchor, then in members).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from mturk_eval.data.loaders import Episode


_CONTRACTIONS = [
    (r"\bi'm\b", "i am"), (r"\bi've\b", "i have"), (r"\bi'd\b", "i would"), (r"\bi'll\b", "i will"),
    (r"\b(do|does|did|is|are|was|were|have|has|had|could|would|should)n't\b", r"\1 not"),
    (r"\bcan't\b", "can not"), (r"\bcannot\b", "can not"), (r"\bwon't\b", "will not"),
    (r"\bit's\b", "it is"), (r"\bthat's\b", "that is"), (r"\bthey're\b", "they are"),
    (r"\bwe're\b", "we are"), (r"\byou're\b", "you are"),
]


def normalise(sentence: str) -> str:
    """Comparison key of a persona sentence. ConvAI2 writes "i'm" where Persona-Chat writes "i am"."""
    s = " ".join(sentence.lower().split())
    s = re.sub(r"\s+([.,!?;:'])", r"\1", s)
    for pattern, repl in _CONTRACTIONS:
        s = re.sub(pattern, repl, s)
    return s.rstrip(" .!")


@dataclass
class PersonaGroup:
    anchor: frozenset[str]
    episodes: list[Episode]
    sentences: list[str]  # display form, most frequent first

    @property
    def num_pairs(self) -> int:
        return sum(len(e.pairs) for e in self.episodes)


def group_personas(episodes: list[Episode], min_shared: int = 3) -> list[PersonaGroup]:
    """Group episodes into personas (see the module docstring). Returns groups in founding order."""
    position = {id(ep): i for i, ep in enumerate(episodes)}
    by_set: dict[frozenset[str], list[Episode]] = {}
    for ep in episodes:
        key = frozenset(normalise(s) for s in ep.persona)
        by_set.setdefault(key, []).append(ep)

    def order(item: tuple[frozenset[str], list[Episode]]):
        key, eps = item
        return (-len(key), -sum(len(e.pairs) for e in eps), sorted(key))

    anchors: list[frozenset[str]] = []
    members: list[list[frozenset[str]]] = []
    for key, _ in sorted(by_set.items(), key=order):
        best, best_shared = -1, 0
        for i, anchor in enumerate(anchors):
            shared = len(key & anchor)
            if shared >= min_shared and shared > best_shared:
                best, best_shared = i, shared
        if best < 0:
            anchors.append(key)
            members.append([key])
        else:
            members[best].append(key)

    groups = []
    for anchor, keys in zip(anchors, members):
        eps = [ep for k in keys for ep in by_set[k]]
        # Keep the input order of episodes within a persona, so pair ids follow the files.
        eps.sort(key=lambda e: position[id(e)])
        counts: Counter[str] = Counter()
        display: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        for ep in sorted(eps, key=lambda e: frozenset(normalise(s) for s in e.persona) != anchor):
            for s in ep.persona:
                n = normalise(s)
                counts[n] += 1
                display.setdefault(n, s)
                first_seen.setdefault(n, len(first_seen))
        sentences = [display[n] for n in sorted(counts, key=lambda n: (-counts[n], first_seen[n]))]
        groups.append(PersonaGroup(anchor, eps, sentences))
    return groups
