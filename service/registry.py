"""Which models serve: every model directory under the models folder, loaded
from its manifest (no torch), verified against the manifest's sha256, warmed up.
A directory that fails is refused with its reason; the others still serve.

The registry is the name → model map that requests read; service/reload.py changes it while the
service runs (each change one dict assignment on the event loop, so a request sees the old model
or the new one, never half of one)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from pydantic import ValidationError

from common import contract
from common.heads import Head, load_heads
from common.machine import describe
from common.manifest import Manifest, sha256_file
from common.onnx_encoder import SessionConfig

from . import host_check
from .batcher import Batcher
from .errors import NotReady, UnknownModel
from .host_check import HostFidelity
from .runtime import Backend, OnnxBackend, SharedTokenizers

log = logging.getLogger(__name__)


class LoadError(Exception):
    pass


@dataclass
class LoadedModel:
    name: str
    manifest: Manifest | None
    backend: Backend
    batcher: Batcher | None = None
    resident_bytes: int = 0
    heads: dict[str, Head] = field(default_factory=dict)
    host_fidelity: HostFidelity | None = None  # measured at load on this CPU (service/host_check.py)
    path: Path | None = None  # the directory it was loaded from
    fingerprint: str | None = None  # dir_fingerprint() of that directory when it was loaded
    inflight: int = 0  # requests holding this model (event loop only): a replaced model drains to 0

    @property
    def version(self) -> str:
        """Short sha256 of model.onnx: which build answered (header, /models, an info metric)."""
        return self.manifest.sha256[:12] if self.manifest is not None else "none"

    @property
    def has_pooled(self) -> bool:
        """Whether normalize=false can be answered: the graph gives its pooled vector, or its embedding
        is that vector already (a source without Normalize)."""
        return self.backend.returns_pooled or (self.manifest is not None and not self.manifest.normalized)


def read_model_dir(
    path: Path,
    session: SessionConfig,
    tokenizers: SharedTokenizers | None = None,
    min_host_fidelity: float | None = None,
) -> tuple[Manifest, OnnxBackend, dict[str, Head], HostFidelity | None]:
    """Validate one directory, open its session (its tokenizer from `tokenizers` when one with the same
    file is loaded already) and measure its fidelity on this host; LoadError says what is wrong,
    including a host fidelity below min_host_fidelity."""
    for name in (contract.MANIFEST_FILE, contract.MODEL_FILE, contract.TOKENIZER_FILE):
        if not (path / name).is_file():
            raise LoadError(f"missing {name}")
    try:
        manifest = Manifest.read(path)
    except (ValidationError, ValueError) as exc:
        raise LoadError(f"bad manifest: {str(exc).splitlines()[0]}") from exc
    digest = sha256_file(path / contract.MODEL_FILE)
    if digest != manifest.sha256:
        raise LoadError(f"model.onnx sha256 {digest[:12]}… does not match the manifest's {manifest.sha256[:12]}…")
    try:
        tokenizer = (tokenizers or SharedTokenizers()).get(path / contract.TOKENIZER_FILE)
    except Exception as exc:  # the tokenizers library raises a bare Exception for a file it cannot parse
        raise LoadError(f"bad {contract.TOKENIZER_FILE}: {str(exc).splitlines()[0][:200]}") from exc
    try:
        backend = OnnxBackend(path, manifest.max_seq_length, session, tokenizer)
        backend.warm_up()
    except Exception as exc:  # onnxruntime raises several types for a broken graph
        raise LoadError(f"onnxruntime could not load it: {str(exc).splitlines()[0][:200]}") from exc
    if backend.dim != manifest.dim:
        raise LoadError(f"graph output dim {backend.dim} != manifest dim {manifest.dim}")
    try:
        heads = load_heads(path)
    except (ValueError, KeyError, OSError) as exc:
        raise LoadError(f"bad head file: {exc}") from exc
    for head in heads.values():
        if head.weights.shape[1] != manifest.dim:
            raise LoadError(f"head {head.name} expects dim {head.weights.shape[1]}, model has {manifest.dim}")
    try:
        host = host_check.measure(backend, path, manifest.probe)
    except (ValueError, KeyError, OSError) as exc:
        raise LoadError(f"bad probe set: {str(exc).splitlines()[0][:200]}") from exc
    if min_host_fidelity is not None and host is not None and host.mean < min_host_fidelity:
        raise LoadError(
            f"fidelity on this host {host.mean:.5f} (p1 {host.p1:.5f}, {host.texts} probe texts) is below "
            f"EMBED_MIN_HOST_FIDELITY {min_host_fidelity}; built with {host.built_mean} on "
            f"{describe(manifest.machine) if manifest.machine else 'an unrecorded machine'}"
        )
    return manifest, backend, heads, host


def dir_fingerprint(path: Path) -> str:
    """A cheap identity of a directory's contents (every file's name, size and mtime): a reload loads
    again only what changed; the sha256 check at load then proves the new model file."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        digest.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def model_dirs(models_dir: Path) -> list[Path]:
    """The candidate model directories, in name order (hidden ones, e.g. a copy in progress, skipped)."""
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


PRODUCT_DEFAULT = "minilm-l6-fact"
UNKNOWN_MODEL_LABEL = "unknown"  # the metric label of a request naming a model that is not loaded


class Registry:
    def __init__(self, default_model: str | None):
        self.default_model = default_model
        self.models: dict[str, LoadedModel] = {}
        self.failed: dict[str, str] = {}  # directory name → why it is not served
        self.failed_fingerprints: dict[str, str] = {}  # ... and its contents then: a reload retries it once changed
        self.refused_updates: dict[str, str] = {}  # model → why a reload kept its serving version
        self.ready = False
        self.tokenizers = SharedTokenizers()

    def add(self, model: LoadedModel) -> None:
        self.models[model.name] = model

    def load_dir(self, models_dir: Path, session: SessionConfig, min_host_fidelity: float | None = None) -> None:
        """Load every sub-directory (blocking: call it from a worker thread)."""
        if not models_dir.is_dir():
            log.error("models folder %s does not exist", models_dir)
            return
        # The libraries every model runs on are imported (lazily elsewhere) before the first
        # measurement, so the first model's resident bytes are its own, not theirs as well.
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        for path in model_dirs(models_dir):
            try:
                model = self.open(path, session, min_host_fidelity)
            except LoadError as exc:
                self.failed[path.name] = str(exc)
                self.failed_fingerprints[path.name] = dir_fingerprint(path)
                log.error("refusing model %s: %s", path.name, exc)
                continue
            if model.name in self.models:
                self.failed[path.name] = (
                    f"name {model.name!r} is already served from {self.models[model.name].path.name}/"
                )
                log.error("refusing model %s: %s", path.name, self.failed[path.name])
                continue
            self.models[model.name] = model

    def open(
        self, path: Path, session: SessionConfig, min_host_fidelity: float | None = None, fingerprint: str | None = None
    ) -> LoadedModel:
        """One directory loaded, verified, warmed and measured, but not published (no batcher yet);
        blocking. Raises LoadError. fingerprint: the directory's, when the caller took it already."""
        proc = psutil.Process(os.getpid())
        fingerprint = fingerprint or dir_fingerprint(path)
        before = proc.memory_info().rss
        manifest, backend, heads, host = read_model_dir(path, session, self.tokenizers, min_host_fidelity)
        rss = max(0, proc.memory_info().rss - before)
        log.info(
            "loaded %s %s (%.1f MB file, %.1f MB resident)",
            manifest.name,
            manifest.sha256[:12],
            manifest.bytes.file / 1e6,
            rss / 1e6,
        )
        return LoadedModel(
            manifest.name,
            manifest,
            backend,
            resident_bytes=rss,
            heads=heads,
            host_fidelity=host,
            path=path,
            fingerprint=fingerprint,
        )

    def choose_default(self, preferred: str | None) -> str | None:
        """The model a request that names none gets: the configured one, else the product's default
        variant, else the first compressed variant (one with a baseline), else the first model loaded."""
        if preferred is not None:
            self.default_model = preferred
        elif PRODUCT_DEFAULT in self.models:
            self.default_model = PRODUCT_DEFAULT
        else:
            compressed = sorted(n for n, m in self.models.items() if m.manifest and m.manifest.baseline)
            self.default_model = (compressed or sorted(self.models) or [None])[0]
        return self.default_model

    def metric_label(self, name: str | None) -> str:
        """The `model` label for a request that names `name`: a loaded model's name, else one fixed value,
        so that no string a client sends becomes a metric series."""
        key = name or self.default_model
        return key if key in self.models else UNKNOWN_MODEL_LABEL

    def get(self, name: str | None) -> LoadedModel:
        if not self.ready:
            raise NotReady("models are still loading; retry shortly", headers={"Retry-After": "1"})
        key = name or self.default_model
        if key not in self.models:
            if key in self.failed:
                raise UnknownModel(f"model {key!r} failed to load: {self.failed[key]}")
            raise UnknownModel(f"model {key!r} is not served; available: {sorted(self.models)}")
        return self.models[key]

    def baseline_of(self, model: LoadedModel) -> LoadedModel | None:
        base = model.manifest.baseline if model.manifest else None
        return self.models.get(base) if base else None
