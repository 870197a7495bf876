"""Where the models run: ``cpu``, ``cuda``, or ``auto`` (cuda when torch sees a GPU, else cpu).

A config that asks for ``cuda`` on a machine without one is refused when it is built
(:class:`~curation.bounds.ConfigError` naming the setting: a 422 in the service, exit 2 in the
CLI), not when the first round crashes. torch answers that question, and is imported only when
the machine has a CUDA driver at all: without one (most CPU hosts) the answer is no, and a server
or CLI run that needs no torch model (the ONNX embedder, no LM) starts without it, 1.7 s sooner.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Literal

from curation.bounds import ConfigError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    if sys.platform.startswith("linux") and not _cuda_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _cuda_driver_present() -> bool:
    """Whether NVIDIA's driver library loads: torch cannot see a GPU without it."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def check_device(device: str, field: str) -> None:
    """Raise :class:`ConfigError` at ``field`` when ``device`` is ``cuda`` and there is no GPU."""
    if device == "cuda" and not cuda_available():
        raise ConfigError(field, "cuda: no CUDA device is available here (no NVIDIA driver, or "
                                 "torch.cuda.is_available() is false: a CPU build of torch never "
                                 "has one); use cpu or auto")


def resolve_device(device: str, field: str = "device") -> str:
    """``cpu`` or ``cuda`` for a setting's value; ``auto`` is cuda when torch sees a GPU."""
    if device not in DEVICES:
        raise ConfigError(field, f"must be one of {', '.join(DEVICES)}, got {device!r}")
    check_device(device, field)
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device
