"""``dces serve`` / ``python -m app.server``: uvicorn, one worker, graceful SIGTERM.

On SIGTERM (or SIGINT) the model worker starts draining at once, before uvicorn waits for open
requests: a running round gets ``shutdown_grace_s`` to finish, queued jobs stay queued in the
database and resume at the next start, or at once on another replica (they are released).
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import uvicorn
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.logs import configure_logging, disable_hub_progress_bars
from app.settings import Settings

if TYPE_CHECKING:
    from app.worker.queue import ModelWorker


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, worker: ModelWorker, grace_s: float) -> None:
        super().__init__(config)
        self.worker = worker
        self.grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.worker.drain(self.grace_s)
        super().handle_exit(sig, frame)


def serve(settings_overrides: dict[str, Any] | None = None) -> None:
    """Run the service until SIGTERM/SIGINT; ``settings_overrides`` win over DCES_* variables."""
    try:
        settings = Settings(**(settings_overrides or {}))
    except ValidationError as exc:
        _refuse(settings_problems(exc))
    configure_logging(settings.log_level, settings.log_json)
    # Idle OpenMP threads sleep instead of spinning: on a CPU shared with the training job and
    # with the event loop answering probes, spinning threads steal the cores. It must be set
    # before torch loads, i.e. before the imports below, and so must the progress bars' switch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    disable_hub_progress_bars()
    from app.api.problem_responses import ProblemH11Protocol
    from app.main import create_app
    from app.store.database import SchemaVersionError

    try:
        app = create_app(settings)
    except SchemaVersionError as exc:
        _refuse(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        _refuse(database_problem(settings, exc))
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, workers=1, lifespan="on",
        http=ProblemH11Protocol, log_config=None, access_log=False, log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5)
    DrainingServer(config, app.state.services.worker, settings.shutdown_grace_s).run()


def settings_problems(exc: ValidationError) -> str:
    """One line per bad setting, named as the variable that sets it."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        lines.append(f"DCES_{name}: {error['msg']}" if name else error["msg"])
    return "invalid settings:\n  " + "\n  ".join(lines)


def database_problem(settings: Settings, exc: OSError | SQLAlchemyError) -> str:
    """One line: which database could not be opened (data dir, or URL without its password)
    and the driver's reason (e.g. a read-only or missing directory)."""
    if settings.database_url:
        where = "at DCES_DATABASE_URL=" + make_url(settings.database_url).render_as_string()
    else:
        where = f"in DCES_DATA_DIR={settings.data_dir.resolve()}"
    reason = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"cannot open the database {where}: {' '.join(str(reason).split())}"


def _refuse(message: str) -> NoReturn:
    """Exit 2 with the reason and no traceback: a configuration error, not a crash."""
    print(f"dces serve: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    serve()
