"""`python -m service`: uvicorn serving create_app() with the environment's settings.

uvicorn handles SIGTERM gracefully: it stops accepting connections, lets
in-flight requests finish, then runs the lifespan shutdown (which drains the
batchers) and exits.
"""
import logging

import uvicorn

from .app import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
