"""The DCES service's Python client: :class:`DCESClient`, which needs only httpx.

Installed on its own (``pip install ./client``, the ``dces-client`` distribution) so that a
training job gets the client without the service's torch and models.
"""

from importlib.metadata import PackageNotFoundError, version

from dces_client._client import (
    BODY_MARGIN,
    RETRY_ALWAYS,
    RETRY_IF_SAFE,
    RETRY_STATUSES,
    DCESClient,
    DCESError,
    ProgressCallback,
    Sample,
)

try:
    __version__ = version("dces-client")
except PackageNotFoundError:  # imported from a source tree that was not pip-installed
    __version__ = "0.0.0+source"

__all__ = [
    "BODY_MARGIN",
    "RETRY_ALWAYS",
    "RETRY_IF_SAFE",
    "RETRY_STATUSES",
    "DCESClient",
    "DCESError",
    "ProgressCallback",
    "Sample",
    "__version__",
]
