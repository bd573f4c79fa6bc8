"""The one path every embedding request takes: validate → tokenize → batch → (shadow) → vectors."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import threading
import time
from dataclasses import dataclass

import numpy as np

from common.fidelity import cosines
from common.output_types import CALIBRATED, quantize

from . import windows
from .canary import CanaryRule, parse_canary
from .errors import ClientGone, InvalidInput
from .metrics import Metrics
from .recent_texts import RecentTexts
from .registry import LoadedModel, Registry
from .runtime import Tokenized
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    model: LoadedModel
    vectors: np.ndarray  # (n, dim) float32: the model's embedding (unit length when its source normalises)
    pooled: np.ndarray | None  # the same before L2 normalisation; None when the graph only gives unit vectors
    tokens: int
    tokenize_s: float
    queue_s: float
    inference_s: float
    canary_of: str | None = None  # the model the request named, when a canary candidate answered it
    windows: list[np.ndarray] | None = None  # truncate false: each text's window vectors (unit length)


def validate_texts(inputs: object, settings: Settings) -> list[str]:
    """One string or a non-empty list of non-empty strings, within the caps."""
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts:
        raise InvalidInput("inputs must be a string or a non-empty list of strings")
    if len(texts) > settings.max_inputs:
        raise InvalidInput(
            f"{len(texts)} inputs is over the limit of {settings.max_inputs} per request; split the request"
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInput(f"input {i} is {type(t).__name__}, not a string")
        if not t.strip():
            raise InvalidInput(f"input {i} is empty")
        if len(t) > settings.max_chars:
            raise InvalidInput(f"input {i} has {len(t)} characters, over the limit of {settings.max_chars}")
    return texts


# Characters above which a request is tokenized off the event loop: below it the thread hop costs
# more than the tokenizing (a few short sentences take tens of microseconds).
OFFLOAD_CHARS = 4096


def prompt_text(model: LoadedModel, name: str | None) -> str:
    """The text put before each input: the named prompt of the model's manifest, or its default one."""
    manifest = model.manifest
    prompts = manifest.prompts if manifest is not None else {}
    if name is None:
        return manifest.default_prompt if manifest is not None else ""
    if name not in prompts:
        raise InvalidInput(
            f"prompt_name {name!r} is not one of model {model.name!r}'s prompts: "
            f"{', '.join(sorted(prompts)) or 'it has none'}"
        )
    return prompts[name]


async def _watch_disconnect(receive, gone: threading.Event) -> None:
    """Set `gone` when the ASGI server reports the client's disconnect (the body is read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


class Embedder:
    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics):
        self.registry, self.settings, self.metrics = registry, settings, metrics
        self._shadow_tasks: set[asyncio.Task] = set()
        self.canary: dict[str, CanaryRule] = parse_canary(settings.canary or "")
        self.recent = RecentTexts(settings.swap_live_texts)
        self._rng = random.Random()

    def _route(self, model_name: str | None) -> tuple[LoadedModel, LoadedModel | None]:
        """(the model that answers, the one the request named if a canary candidate answers instead)."""
        named = self.registry.get(model_name)
        rule = self.canary.get(named.name)
        if rule is None or rule.candidate not in self.registry.models or not rule.picks_candidate(self._rng):
            return named, None
        return self.registry.models[rule.candidate], named

    async def embed(
        self,
        model_name: str | None,
        texts: list[str] | None = None,
        truncate: bool = True,
        token_ids: list[list[int]] | None = None,
        receive=None,
        route: bool = True,
        prompt_name: str | None = None,
    ) -> Embedded:
        """receive: the request's ASGI receive; when given, a client that disconnects before its request
        reaches a batch has it dropped (TEI's queue does the same), not computed for nobody.
        route=False: the named model answers even when a canary rule would send the request elsewhere.
        prompt_name: the model's prompt put before each text (None: its default; token ids are taken as
        given); the token count includes it."""
        model, named = self._route(model_name) if route else (self.registry.get(model_name), None)
        prompt = prompt_text(model, prompt_name)
        raw = texts
        if texts is not None and prompt:
            texts = [prompt + t for t in texts]
        # Held until the answer is computed: a reload replacing this model waits for it (service/reload.py).
        model.inflight += 1
        try:
            result = await self._embed(model, texts, truncate, token_ids, receive)
        finally:
            model.inflight -= 1
        if raw is not None:
            self.recent.add(model.name, raw)
        if named is not None:
            result.canary_of = named.name
            self.metrics.canary_requests.labels(named.name, model.name).inc()
        return result

    async def _embed(
        self, model: LoadedModel, texts: list[str] | None, truncate: bool, token_ids: list[list[int]] | None, receive
    ) -> Embedded:
        model.batcher.admit(len(token_ids if token_ids is not None else texts))  # shed before tokenizing
        gone = threading.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone)) if receive is not None else None
        try:
            t0 = time.perf_counter()
            if token_ids is not None:
                items = model.backend.from_ids(token_ids, truncate)
            elif sum(map(len, texts)) > OFFLOAD_CHARS:
                # a large request is tokenized on a thread (the Rust tokenizer releases the GIL), so
                # that it does not stall every other client on the event loop
                items = await asyncio.to_thread(model.backend.tokenize, texts, truncate)
            else:
                items = model.backend.tokenize(texts, truncate)
            tokenize_s = time.perf_counter() - t0
            self.metrics.tokenize_seconds.labels(model.name).observe(tokenize_s)
            if gone.is_set():
                raise ClientGone("the client disconnected before its request was computed")
            plan = None
            run_items = items
            if not truncate:  # every window of a long text is one more item in the batcher
                s = self.settings
                plan = windows.plan(
                    [windows.Piece(i.ids, i.head, i.tail) for i in items],
                    model.backend.max_length,
                    s.window_overlap,
                    s.max_tokens_per_text,
                    s.max_tokens_per_request,
                )
                run_items = [Tokenized(w) for w in plan.windows]
            vectors, stats = await model.batcher.submit(run_items, gone)
        finally:
            if watcher is not None:
                watcher.cancel()
        self.metrics.queue_seconds.labels(model.name).observe(stats.queue_seconds)
        pooled = vectors if model.has_pooled else None
        if model.backend.returns_pooled:
            vectors = unit(vectors)
        self._maybe_shadow(model, run_items, vectors)
        self._compare_canary(model, run_items, vectors)
        per_window = None
        if plan is not None:
            per_window = plan.per_text(vectors)
            pooled = plan.pool(pooled, normalize=False) if pooled is not None else None
            vectors = plan.pool(vectors, normalize=True)
        return Embedded(
            model,
            vectors,
            pooled,
            sum(len(i.ids) for i in items),
            tokenize_s,
            stats.queue_seconds,
            stats.inference_seconds,
            windows=per_window,
        )

    def _maybe_shadow(self, model: LoadedModel, items, vectors: np.ndarray) -> None:
        """With probability shadow_rate, re-run a compressed model's request on its baseline, off the request path."""
        rate = self.settings.shadow_rate
        baseline = self.registry.baseline_of(model)
        if rate <= 0 or baseline is None or self._rng.random() >= rate:
            return
        self._in_background(baseline, items, vectors, self.metrics.shadow_fidelity.labels(model.name, baseline.name))

    def _compare_canary(self, model: LoadedModel, items, vectors: np.ndarray) -> None:
        """A candidate's answer is compared with the named model's own on the same tokens."""
        for rule in self.canary.values():
            named = self.registry.models.get(rule.name)
            if rule.candidate == model.name and named is not None and named.backend.dim == model.backend.dim:
                self._in_background(named, items, vectors, self.metrics.canary_fidelity.labels(rule.name, model.name))

    def _in_background(self, reference: LoadedModel, items, vectors: np.ndarray, histogram) -> None:
        """Run the same items on `reference` off the request path and observe each cosine."""

        async def compare() -> None:
            try:
                ref, _ = await reference.batcher.submit(items)
            except Exception as exc:  # noqa: BLE001 - background traffic must never hurt the real request
                log.debug("background comparison skipped: %s", exc)
                return
            for c in cosines(ref, vectors):
                histogram.observe(float(c))

        task = asyncio.get_running_loop().create_task(compare())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1."""
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def check_dimensions(model: LoadedModel, dimensions: int, allow_any: bool) -> None:
    """`dimensions` only where the model was measured to support it (its manifest's `dimensions`), as vLLM
    answers a model without Matryoshka training; the full size always; any size with allow_any."""
    dim = model.backend.dim
    if dimensions > dim:
        raise InvalidInput(f"dimensions {dimensions} is more than this model's {dim}")
    supported = model.manifest.supported_dimensions if model.manifest is not None else []
    if dimensions != dim and dimensions not in supported and not allow_any:
        raise InvalidInput(
            f"model {model.name!r} does not support dimensions {dimensions}: its build measured "
            f"{supported or 'no shorter vector'} as good enough (Matryoshka); the full size is {dim}"
        )


def postprocess(result: Embedded, normalize: bool, dimensions: int | None = None) -> np.ndarray:
    """The vectors a client asked for. normalize=True: unit length, optionally truncated to the first
    `dimensions` and re-normalised (OpenAI's `dimensions`). normalize=False: the pooled vector before
    L2 normalisation (TEI's meaning), which a graph exported without its `pooled` output cannot give."""
    vectors = result.vectors
    if dimensions is not None:
        if dimensions > vectors.shape[1]:
            raise InvalidInput(f"dimensions {dimensions} is more than this model's {vectors.shape[1]}")
        return unit(vectors[:, :dimensions])  # a truncated vector is only useful re-normalised
    if normalize:
        return unit(vectors)
    if result.pooled is None:
        raise InvalidInput(
            f"model {result.model.name!r} gives only unit-length vectors (its graph has no "
            f"'pooled' output; rebuild it with this version); send normalize=true"
        )
    return result.pooled


def encode_vectors(
    vectors: np.ndarray, encoding_format: str, embedding_type: str = "float", model: LoadedModel | None = None
) -> list:
    """float: lists of floats, base64 of little-endian float32 bytes; int8/uint8/binary/ubinary
    (common/output_types.py): lists of integers, base64 of the raw bytes."""
    if embedding_type != "float":
        ranges = model.manifest.output_types.get("ranges") if model and model.manifest else None
        if embedding_type in CALIBRATED and not ranges:
            name = model.name if model else "?"
            raise InvalidInput(
                f"model {name!r} has no calibrated ranges for {embedding_type} (its build predates them); "
                "use float, binary or ubinary"
            )
        vectors = quantize(vectors, embedding_type, ranges)
        if encoding_format == "base64":
            return [base64.b64encode(v.tobytes()).decode("ascii") for v in vectors]
        return vectors.astype(int).tolist()
    if encoding_format == "base64":
        return [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    return vectors.tolist()
