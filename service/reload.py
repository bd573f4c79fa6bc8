"""Hot reload: rescan the models folder while serving (POST /admin/reload, SIGHUP).

- a new directory is loaded, verified (sha256), warmed and measured on a worker thread, and only
  then published;
- a changed directory (its files' fingerprint differs) is loaded beside the serving version. If it
  keeps the name, the fidelity gate (service/swap_gate.py) compares the two versions' vectors; below
  the floors the swap is refused unless forced. Accepted, it is swapped in with one assignment;
- a removed directory is unpublished; its requests in flight and in its queue finish
  (`inflight` falls to 0, then its batcher drains), and it is unloaded.

A load that fails leaves the old version serving; the reason is in the answer, the log and
/models (`failed` for a directory that never loaded, `refused_updates` for a version that did not
replace the serving one). One reload runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .registry import LoadedModel, LoadError, dir_fingerprint, model_dirs
from .swap_gate import check_swap

log = logging.getLogger(__name__)


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # directory or model → why it did not load
    refused: dict[str, str] = field(default_factory=dict)  # model → why its new version was not swapped in
    gate: dict[str, dict] = field(default_factory=dict)  # model → the fidelity gate's figures
    versions: dict[str, str] = field(default_factory=dict)  # model → the version serving after the reload
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class Reloader:
    """Owns the change of the registry while the service runs. `publish(model)` starts a model's
    batcher; `published()` refreshes the metrics once the registry has changed (both from app.py)."""

    def __init__(self, svc, publish, published):
        self.svc, self._publish, self.published = svc, publish, published
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task] = set()

    async def reload(self, force: bool = False) -> ReloadReport:
        async with self._lock:
            t0 = time.perf_counter()
            report = ReloadReport()
            await self._rescan(report, force)
            self.svc.registry.choose_default(self.svc.settings.default_model)
            self.published()
            report.versions = {n: m.version for n, m in sorted(self.svc.registry.models.items())}
            report.seconds = round(time.perf_counter() - t0, 3)
            log.info(
                "reload: added %s, replaced %s, removed %s, refused %s, failed %s",
                report.added,
                report.replaced,
                report.removed,
                sorted(report.refused),
                sorted(report.failed),
            )
            return report

    def reload_in_background(self) -> None:
        """SIGHUP's reload: runs on the loop, its report goes to the log."""

        async def run() -> None:
            if not self.svc.registry.ready:
                log.warning("reload ignored: the first load has not finished")
                return
            try:
                await self.reload()
            except Exception:  # noqa: BLE001 - a signal has nobody to answer; the log is the answer
                log.exception("reload failed")

        self._keep(asyncio.get_running_loop().create_task(run()))

    async def watch(self, poll_s: float, seen: str | None) -> None:
        """Reload when the models folder's contents change (EMBED_RELOAD_POLL_S): on Kubernetes every replica
        mounting one volume picks up a new version this way, each through its own fidelity gate. A change
        is acted on once two polls in a row agree (a copy still being written keeps moving), after the
        first load. seen: the folder's fingerprint before the first load began, so a change made while it
        ran is not missed."""
        models_dir = Path(self.svc.settings.models_dir)
        last = None
        while True:
            await asyncio.sleep(poll_s)
            if not self.svc.registry.ready:
                continue
            try:
                now = await asyncio.to_thread(dir_fingerprint, models_dir)
            except OSError as exc:  # the volume went away for a moment: keep serving, look again
                log.warning("reload watcher: cannot read %s (%s)", models_dir, exc)
                continue
            if now != seen and now == last:
                seen = now
                log.info("reload watcher: %s changed", models_dir)
                try:
                    await self.reload()
                except Exception:  # noqa: BLE001 - the watcher must outlive one failed reload
                    log.exception("reload failed")
            last = now

    def _keep(self, task: asyncio.Task) -> None:
        self._draining.add(task)  # referenced until done (the loop keeps only weak references)
        task.add_done_callback(self._draining.discard)

    async def _rescan(self, report: ReloadReport, force: bool) -> None:
        reg, settings = self.svc.registry, self.svc.settings
        root = settings.models_dir
        dirs = {p.name: p for p in model_dirs(root)} if root.is_dir() else {}
        by_dir = {m.path.name: m for m in reg.models.values() if m.path is not None}
        for dir_name, old in sorted(by_dir.items()):
            if dir_name not in dirs:
                self._remove(old, report)
        for dir_name, path in sorted(dirs.items()):
            old = by_dir.get(dir_name)
            fingerprint = await asyncio.to_thread(dir_fingerprint, path)
            if old is not None and old.fingerprint == fingerprint:
                report.unchanged.append(old.name)
                continue
            if old is None and reg.failed_fingerprints.get(dir_name) == fingerprint:
                report.failed[dir_name] = reg.failed[dir_name]  # refused before and not changed since
                continue
            await self._load(path, old, fingerprint, report, force)

    async def _load(
        self, path: Path, old: LoadedModel | None, fingerprint: str, report: ReloadReport, force: bool
    ) -> None:
        reg, settings = self.svc.registry, self.svc.settings
        try:
            new = await asyncio.to_thread(
                reg.open, path, settings.session_config(), settings.min_host_fidelity, fingerprint
            )
        except LoadError as exc:
            reason = str(exc)
            log.error("reload: %s did not load: %s", path.name, reason)
            if old is None:
                reg.failed[path.name], reg.failed_fingerprints[path.name] = reason, fingerprint
                report.failed[path.name] = reason
            else:  # the serving version stays
                reg.refused_updates[old.name] = f"the new version in {path.name}/ did not load: {reason}"
                report.failed[old.name] = reason
                self.svc.metrics.swaps.labels(old.name, "failed").inc()
            return
        taken = reg.models.get(new.name)
        if taken is not None and taken is not old:
            reason = f"name {new.name!r} is already served from {taken.path.name if taken.path else '?'}/"
            reg.failed[path.name], reg.failed_fingerprints[path.name] = reason, fingerprint
            report.failed[path.name] = reason
            return
        reg.failed.pop(path.name, None)
        reg.failed_fingerprints.pop(path.name, None)
        if old is None or old.name != new.name:
            if old is not None:  # the directory now holds another model: the old name goes away
                self._remove(old, report)
            self._publish(new)
            reg.models[new.name] = new
            report.added.append(new.name)
            self.svc.metrics.swaps.labels(new.name, "added").inc()
            return
        gate = await asyncio.to_thread(check_swap, old, new, self.svc.embedder.recent.get(old.name), settings)
        report.gate[old.name] = gate.to_dict()
        for stat, value in (("mean", gate.mean), ("p1", gate.p1)):
            if value is not None:
                self.svc.metrics.swap_fidelity.labels(old.name, stat).set(value)
        if not gate.passed and not force:
            reg.refused_updates[old.name] = gate.reason
            report.refused[old.name] = gate.reason
            self.svc.metrics.swaps.labels(old.name, "refused").inc()
            log.warning("reload: %s kept at %s: %s", old.name, old.version, gate.reason)
            return
        self._publish(new)
        reg.models[new.name] = new  # the swap: requests from here on get the new version
        reg.refused_updates.pop(old.name, None)
        self.svc.label_cache.forget(old.name)
        report.replaced.append(new.name)
        self.svc.metrics.swaps.labels(new.name, "forced" if not gate.passed else "replaced").inc()
        log.info("reload: %s %s → %s (fidelity %s)", new.name, old.version, new.version, gate.summary)
        self._drain_later(old)

    def _remove(self, old: LoadedModel, report: ReloadReport) -> None:
        reg = self.svc.registry
        if reg.models.get(old.name) is old:
            del reg.models[old.name]
        reg.refused_updates.pop(old.name, None)
        self.svc.embedder.recent.forget(old.name)
        self.svc.label_cache.forget(old.name)
        report.removed.append(old.name)
        self.svc.metrics.swaps.labels(old.name, "removed").inc()
        self._drain_later(old)

    def _drain_later(self, old: LoadedModel) -> None:
        self._keep(asyncio.get_running_loop().create_task(drain(old, self.svc.settings.drain_timeout_s)))

    async def wait_drained(self) -> None:
        """For shutdown and tests: every background reload and drain has finished."""
        while self._draining:
            await asyncio.gather(*list(self._draining), return_exceptions=True)


async def drain(model: LoadedModel, timeout_s: float) -> None:
    """Wait for the requests holding an unpublished model, then finish its queue and stop its workers.
    Nothing new reaches it: the registry no longer names it."""
    deadline = time.monotonic() + timeout_s
    while model.inflight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if model.inflight > 0:
        log.warning(
            "unloading %s %s with %d requests still holding it after %.0f s",
            model.name,
            model.version,
            model.inflight,
            timeout_s,
        )
    if model.batcher is not None:
        await model.batcher.close()
    log.info("unloaded %s %s", model.name, model.version)
