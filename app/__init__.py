"""DCES service: the FastAPI app (:func:`app.main.create_app`), its storage and job worker, and
the ``dces`` CLI. Its Python client is the separate ``dces_client`` package (``client/``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dces")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
