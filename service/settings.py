"""One settings object, read once from the environment (prefix EMBED_)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.onnx_encoder import SERVING, SessionConfig

from .canary import parse_canary


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBED_", frozen=True)

    models_dir: Path = Field(Path("models"), description="folder whose sub-folders are model directories")
    default_model: str | None = Field(
        None,
        description="model used when a request names none (unset: minilm-l6-fact "
        "if loaded, else the first compressed variant, else the first model)",
    )
    host: str = Field("127.0.0.1", description="bind address (the container sets 0.0.0.0)")
    port: int = Field(8000, ge=0, le=65535)
    threads: int = Field(
        0,
        ge=0,
        description="cores for one model's inference, shared out among its workers as "
        "onnxruntime intra-op threads (0: every core)",
    )
    workers: int = Field(
        2, ge=1, le=64, description="inference threads per model, each running its own batch on the shared session"
    )
    gil_switch_ms: float = Field(
        0.5,
        gt=0,
        le=100,
        description="Python's GIL switch interval: how long a worker "
        "coming back from onnxruntime may wait for the busy event loop (Python's default: 5)",
    )
    ort_spin: bool = Field(SERVING.spin, description="let idle onnxruntime threads spin-wait between batches")
    ort_arena: bool = Field(
        SERVING.arena, description="onnxruntime memory arena (keeps the largest batch's buffers resident)"
    )
    ort_arena_keep_tokens: int = Field(
        SERVING.arena_keep_tokens,
        ge=0,
        description="a batch of more tokens "
        "(rows × padded length) gives its arena growth back when it ends, so one "
        "long batch does not stay resident",
    )
    malloc_mmap_threshold: int = Field(
        128 * 1024,
        ge=0,
        le=32 * 2**20,
        description="bytes from which glibc "
        "gives an allocation its own mapping, returned to the system on free; fixed "
        "so that batch buffers do not stay resident after a load peak (0: glibc's "
        "moving default)",
    )
    max_batch_tokens: int = Field(
        16384, ge=1, description="token budget of one inference batch (batch × padded length)"
    )
    max_batch_size: int = Field(64, ge=1, description="texts per inference batch")
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        description="longest a request waits for others to share its batch, "
        "counted from when it was queued (only under concurrent traffic)",
    )
    queue_size: int = Field(1024, ge=1, description="texts waiting per model before requests get 429")
    max_inputs: int = Field(256, ge=1, description="texts per request")
    max_chars: int = Field(50000, ge=1, description="characters per text")
    max_tokens_per_text: int = Field(
        8192, ge=1, description="tokens per text with truncate false (windowed); over it: 413"
    )
    max_tokens_per_request: int = Field(
        32768, ge=1, description="tokens per request with truncate false (windowed); over it: 413"
    )
    window_overlap: int = Field(32, ge=0, description="tokens consecutive windows of a long text share")
    openai_long_inputs: Literal["truncate", "window"] = Field(
        "truncate",
        description="/v1/embeddings' texts over the model's length: cut, or windowed as /embed's "
        "truncate false (its clients cannot send the field)",
    )
    max_body_bytes: int = Field(2_000_000, ge=1, description="request body size cap")
    keep_alive_s: float = Field(
        75.0,
        gt=0,
        description="idle keep-alive of client connections; keep it above any "
        "load balancer's idle timeout so the server never closes a connection a client reuses",
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="longest wait for the next chunk of a request body (408 after)"
    )
    api_key: SecretStr | None = Field(None, description="if set, Bearer token required on all but health and metrics")
    reload_poll_s: float = Field(
        0.0,
        ge=0.0,
        description="seconds between looks at the models folder; a change reloads through the "
        "fidelity gate, as POST /admin/reload does (0: only on request or SIGHUP)",
    )
    allow_any_dimensions: bool = Field(
        False,
        description="answer `dimensions` by truncation for any model, not only at the sizes its build measured "
        "as supported (a model not trained for it loses quality silently)",
    )
    shadow_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="share of compressed-model requests re-run on the baseline"
    )
    zero_shot_temperature: float = Field(0.05, gt=0, description="softmax temperature over label cosines")
    min_host_fidelity: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="refuse a model whose mean fidelity on "
        "this host's CPU, measured on its probe set at load, is below this",
    )
    max_labels: int = Field(64, ge=2, description="zero-shot labels per request")
    max_label_chars: int = Field(200, ge=1, description="characters per zero-shot label and per hypothesis template")
    label_cache_size: int = Field(
        4096, ge=0, description="zero-shot label vectors kept for reuse (least recently used dropped first; 0: none)"
    )
    admin_routes: bool = Field(
        True,
        description="serve POST /admin/reload (behind the API key when one is set); "
        "false: 404, and SIGHUP still reloads",
    )
    swap_min_fidelity: float = Field(
        0.99,
        ge=-1,
        le=1,
        description="a reload replaces a model under the same name "
        "only if the new version's vectors agree with the old one's at this mean cosine "
        "(probe set and recent live texts); below it stored vectors would need re-indexing",
    )
    swap_min_fidelity_p1: float = Field(0.97, ge=-1, le=1, description="... and at this 1st-percentile cosine")
    swap_live_texts: int = Field(
        256,
        ge=0,
        le=10000,
        description="recent request texts kept per model (in memory "
        "only, each cut to 1,000 characters) to check a swap on live traffic too (0: probe "
        "set only)",
    )
    drain_timeout_s: float = Field(
        30.0,
        gt=0,
        description="longest a replaced or removed model waits for the requests holding it before it is unloaded",
    )
    canary: str | None = Field(
        None,
        description="'name=candidate:share[,...]': that share of requests for name "
        "are answered by candidate, and compared with name in the background",
    )
    log_level: str = Field("info", description="uvicorn and service log level")

    @field_validator("canary")
    @classmethod
    def _canary_parses(cls, value: str | None) -> str | None:
        if value:
            parse_canary(value)  # a ValueError here is pydantic's one-line validation error
        return value

    def session_config(self) -> SessionConfig:
        threads = self.threads
        if self.workers > 1:  # the cores shared out: batches side by side, not ops
            threads = max(1, (threads or os.cpu_count() or 1) // self.workers)
        return SessionConfig(
            threads=threads, spin=self.ort_spin, arena=self.ort_arena, arena_keep_tokens=self.ort_arena_keep_tokens
        )
