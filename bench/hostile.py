"""Hostile requests: each is sent to a running service and must get a 4xx (or, for odd but
valid text, a correct 200) within a bounded time, never a 5xx, a hang or a dropped connection
without an answer. Raw-socket cases cover what an HTTP client library will not send."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

EVERY_SCRIPT = (
    "naïve café — Straße, Ελληνικά, русский, עברית, العربية, हिन्दी, বাংলা, ไทย, 한국어, 日本語, "
    "中文, ქართული, Հայերեն, ᚠᚢᚦ, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, 🙂🚀👩‍👩‍👧‍👦, \u200b\u200d\ufeff"
)


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[str], tuple[int, bytes]]  # url -> (status, body)
    ok: tuple[int, ...]  # statuses that are a correct answer


def _post_json(path: str, body: object) -> Callable[[str], tuple[int, bytes]]:
    def send(url: str) -> tuple[int, bytes]:
        r = httpx.post(url + path, json=body, timeout=30)
        return r.status_code, r.content

    return send


def _post_raw(path: str, raw: bytes) -> Callable[[str], tuple[int, bytes]]:
    def send(url: str) -> tuple[int, bytes]:
        r = httpx.post(url + path, content=raw, headers={"content-type": "application/json"}, timeout=30)
        return r.status_code, r.content

    return send


def _socket(
    head: bytes, body_parts: list[bytes], pause_s: float = 0.0, close_early: bool = False, timeout: float = 30
) -> Callable[[str], tuple[int, bytes]]:
    """Hand-written HTTP/1.1: partial bodies, slow senders. Status 0 means no answer (expected when we hang up)."""

    def send(url: str) -> tuple[int, bytes]:
        u = urlparse(url)
        with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
            s.sendall(head)
            for part in body_parts:
                s.sendall(part)
                time.sleep(pause_s)
            if close_early:
                s.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + _length(data):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        if not data.startswith(b"HTTP/1.1 "):
            return 0, data
        return int(data[9:12]), data.split(b"\r\n\r\n", 1)[1]

    return send


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def cases(max_body_bytes: int, body_timeout_s: float) -> list[Case]:
    nested = ("[" * 100_000 + "]" * 100_000).encode()
    half = b'{"inputs": ["a complete sentence", "and half of anoth'
    return [
        Case("1 MB string", _post_json("/embed", {"inputs": "a" * 1_000_000}), (413, 422)),
        Case("100k-item list", _post_json("/embed", {"inputs": ["x"] * 100_000}), (413, 422)),
        # one token array of 100k ids: truncated to the model's limit like any long input (truncate is on)
        Case("100k token ids", _post_json("/v1/embeddings", {"input": [1] * 100_000}), (200, 413, 422)),
        Case("deeply nested JSON", _post_raw("/embed", nested), (400, 413, 422)),
        Case("nested inputs", _post_raw("/embed", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"), (400, 413, 422)),
        Case("invalid UTF-8", _post_raw("/embed", b'{"inputs": "\xff\xfe\xc3\x28"}'), (400, 422)),
        Case("not JSON", _post_raw("/embed", b"inputs=hello"), (400, 422)),
        Case("empty body", _post_raw("/embed", b""), (400, 422)),
        Case("NUL bytes", _post_json("/embed", {"inputs": "nul \u0000 in the middle\u0000"}), (200,)),
        Case("emoji and every script", _post_json("/embed", {"inputs": [EVERY_SCRIPT, "🙂" * 5000]}), (200,)),
        Case("only whitespace", _post_json("/embed", {"inputs": "   \t\n "}), (200, 422)),
        Case("number where a string belongs", _post_json("/embed", {"inputs": 42}), (422,)),
        Case("numbers in the list", _post_json("/embed", {"inputs": ["ok", 1.5, True]}), (422,)),
        Case("null inputs", _post_json("/embed", {"inputs": None}), (422,)),
        Case("null in the list", _post_json("/embed", {"inputs": ["ok", None]}), (422,)),
        Case("null model", _post_json("/embed", {"inputs": "ok", "model": None}), (200,)),
        Case("unknown field", _post_json("/embed", {"inputs": "ok", "evil": 1}), (422,)),
        Case("huge top_k", _post_json("/classify", {"inputs": "ok", "top_k": 10**30}), (200, 422)),
        Case("negative top_k", _post_json("/classify", {"inputs": "ok", "top_k": -3}), (422,)),
        Case("negative dimensions", _post_json("/v1/embeddings", {"input": "ok", "dimensions": -1}), (422,)),
        Case("huge dimensions", _post_json("/v1/embeddings", {"input": "ok", "dimensions": 10**9}), (422,)),
        Case("negative token id", _post_json("/v1/embeddings", {"input": [5, -1]}), (422,)),
        Case("token id past the vocabulary", _post_json("/v1/embeddings", {"input": [[5, 10**9]]}), (422,)),
        Case("model as a path", _post_json("/embed", {"inputs": "ok", "model": "../../../etc/passwd"}), (404,)),
        Case("zero-shot with one label", _post_json("/classify", {"inputs": "ok", "labels": ["one"]}), (422,)),
        Case("zero-shot with an empty label", _post_json("/classify", {"inputs": "ok", "labels": ["a", ""]}), (422,)),
        Case("duplicate keys", _post_raw("/embed", b'{"inputs": "ok", "inputs": 3}'), (422,)),
        Case("body over the cap (declared)", _socket(_head("/embed", max_body_bytes + 1), []), (413,)),
        Case(
            "body that stops half-way",
            _socket(_head("/embed", len(half) + 500), [half], timeout=body_timeout_s + 20),
            (408,),
        ),
        Case(
            "slow client",
            _socket(
                _head("/embed", 60),
                [b'{"inputs": '] + [b" "] * 8,
                pause_s=min(1.0, body_timeout_s / 4),
                timeout=body_timeout_s + 20,
            ),
            (408,),
        ),
        Case(
            "client hangs up mid-body",
            _socket(_head("/embed", 5000), [b'{"inputs": "x'], close_early=True, timeout=5),
            (0, 400, 408, 422),
        ),
    ]


def run_case(url: str, case: Case) -> dict:
    t0 = time.perf_counter()
    try:
        status, body = case.send(url)
        error = None
    except Exception as exc:  # noqa: BLE001 - a transport failure is a finding, not a crash of the run
        status, body, error = -1, b"", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    shape_ok = True
    if 400 <= status < 600:
        try:
            err = json.loads(body)["error"]
            shape_ok = isinstance(err["type"], str) and isinstance(err["message"], str)
        except (ValueError, KeyError, TypeError):
            shape_ok = False
    return {
        "case": case.name,
        "status": status,
        "ok": status in case.ok and shape_ok and error is None,
        "error_shape": shape_ok,
        "seconds": round(seconds, 3),
        "transport_error": error,
    }
