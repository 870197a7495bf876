"""DCES service: the FastAPI app (:func:`app.main.create_app`), its storage and job worker, the
``dces`` CLI, and :class:`DCESClient`, an httpx client that imports neither torch nor the engine."""

from importlib.metadata import PackageNotFoundError, version

from app.client import DCESClient, DCESError

try:
    __version__ = version("dces")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+source"

__all__ = ["DCESClient", "DCESError", "__version__"]
