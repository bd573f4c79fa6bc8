"""The fidelity gate of a swap: a new version of a model may replace the serving one under the same
name only if their vectors agree, because users' indexes hold vectors the old one made. Both
versions embed the same texts (the new directory's probe set and the recent live texts) and the
per-text cosine must reach EMBED_SWAP_MIN_FIDELITY (mean) and EMBED_SWAP_MIN_FIDELITY_P1."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from common.fidelity import fidelity
from common.probe_set import ProbeSet

from .host_check import encode_texts
from .registry import LoadedModel
from .settings import Settings


@dataclass(frozen=True)
class GateResult:
    passed: bool
    mean: float | None
    p1: float | None
    probe_texts: int
    live_texts: int
    reason: str  # why it failed, or what it measured

    @property
    def summary(self) -> str:
        return f"mean {self.mean} p1 {self.p1} on {self.probe_texts} probe + {self.live_texts} live texts"

    def to_dict(self) -> dict:
        return asdict(self)


def check_swap(old: LoadedModel, new: LoadedModel, live: list[str], settings: Settings) -> GateResult:
    """Compare the two versions on the probe set and the live texts (blocking: run it on a thread)."""
    if old.backend.dim != new.backend.dim:
        return GateResult(
            False,
            None,
            None,
            0,
            0,
            f"dimension {old.backend.dim} → {new.backend.dim}: a different "
            "model; vectors stored from the serving version would need re-indexing",
        )
    probe = (ProbeSet.read(new.path) if new.path else None) or (ProbeSet.read(old.path) if old.path else None)
    probe_texts = list(dict.fromkeys(probe.texts)) if probe is not None else []
    texts = list(dict.fromkeys(probe_texts + live))  # distinct, probe texts first
    if not texts:
        return GateResult(
            False,
            None,
            None,
            0,
            0,
            "no probe set and no live texts to compare the versions on; reload with force to swap anyway",
        )
    mean, p1 = fidelity(encode_texts(new.backend, texts), encode_texts(old.backend, texts))
    mean, p1 = round(mean, 5), round(p1, 5)
    live_count = len(texts) - len(probe_texts)
    floor, floor_p1 = settings.swap_min_fidelity, settings.swap_min_fidelity_p1
    if mean >= floor and p1 >= floor_p1:
        return GateResult(
            True, mean, p1, len(probe_texts), live_count, f"vectors agree: mean {mean} ≥ {floor}, p1 {p1} ≥ {floor_p1}"
        )
    return GateResult(
        False,
        mean,
        p1,
        len(probe_texts),
        live_count,
        f"new version {new.version} agrees with serving {old.version} at mean {mean} (floor {floor}) "
        f"and p1 {p1} (floor {floor_p1}) on {len(texts)} texts: vectors stored from the serving "
        "version would need re-indexing; reload with force to swap anyway",
    )
