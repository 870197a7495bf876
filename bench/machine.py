"""What machine a benchmark ran on, recorded with its results.

One description for every bench: the CPU's model name and the SIMD extensions that change what
the numbers are (bf16 and VNNI make the embedder ~3x faster; floating-point results of training
differ between CPUs, so a collapse run on another CPU follows other trajectories from the same
seeds), the core count, the GPU if any, the library versions and the load average when the
run began.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

SIMD = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name (``platform``'s guess without /proc/cpuinfo) and its flags."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return model, flags


def machine() -> dict[str, Any]:
    """The machine and the state it was in at the start of a run."""
    import torch

    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": [f for f in SIMD if f in flags],
        "gpu": torch.cuda.is_available(),
        # The card: a run's speed and floating point depend on it.
        "gpu_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        # Its API moves (5.17 took a KV cache under another name than 5.25).
        "transformers": importlib.metadata.version("transformers"),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }
