"""Canary traffic: a share of the requests that name one model are answered by a candidate
(`EMBED_CANARY="name=candidate:0.1"`, or the reload body), and the candidate's answers are compared
with the model's own in the background, so its fidelity is observed on real traffic before a swap."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class CanaryRule:
    name: str  # the model requests ask for
    candidate: str  # the model that answers `share` of them
    share: float

    def picks_candidate(self, rng: random.Random) -> bool:
        return rng.random() < self.share


def parse_canary(spec: str) -> dict[str, CanaryRule]:
    """'a=b:0.1,c=d:0.05' → {a: rule, c: rule}; '' → {}. Raises ValueError saying what is wrong."""
    rules: dict[str, CanaryRule] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, rest = part.partition("=")
        candidate, colon, share_text = rest.rpartition(":")
        if not eq or not colon or not name.strip() or not candidate.strip():
            raise ValueError(f"canary {part!r}: expected 'name=candidate:share'")
        try:
            share = float(share_text)
        except ValueError:
            raise ValueError(f"canary {part!r}: share {share_text!r} is not a number") from None
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary {part!r}: share must be within [0, 1]")
        name, candidate = name.strip(), candidate.strip()
        if name == candidate:
            raise ValueError(f"canary {part!r}: a model cannot be its own candidate")
        if name in rules:
            raise ValueError(f"canary {part!r}: {name!r} has two candidates")
        rules[name] = CanaryRule(name, candidate, share)
    return rules
