"""`python -m service`: uvicorn serving create_app() with the environment's settings.

uvicorn handles SIGTERM gracefully: it stops accepting connections, lets
in-flight requests finish, then runs the lifespan shutdown (which drains the
batchers). We then exit 0: a drained shutdown is a clean one, and
orchestrators (Kubernetes, compose) treat a re-raised SIGTERM as a kill.
"""

import logging
import signal
import sys
from types import FrameType

import uvicorn

from common.memory import fix_mmap_threshold

from .app import create_app
from .settings import Settings


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after the drain; we exit 0 instead, also when a
        # second SIGTERM arrives while draining (each one is captured).
        self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def main() -> None:
    settings = Settings()
    fix_mmap_threshold(settings.malloc_mmap_threshold)  # before the models load: see common.memory
    # Under load the event loop holds the GIL nearly all the time; at Python's default 5 ms interval a
    # worker whose batch just finished waited up to that long to hand it back and plan the next one.
    sys.setswitchinterval(settings.gil_switch_ms / 1000)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_s,
    )
    server = _Server(config)
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's startup-failure code: port taken, bad host, ...


if __name__ == "__main__":
    main()
