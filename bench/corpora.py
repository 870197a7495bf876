"""Real human-written text for benchmarks: the Debian `fortunes` corpus, by category."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Files that are not prose (pictures, word lists) or not English sentences.
NOT_PROSE = {"ascii-art", "art"}


@dataclass(frozen=True)
class Fortune:
    id: str
    text: str
    category: str


def ensure_fortunes() -> None:
    """Install Debian's `fortunes` package when it is missing (the benchmarks need it)."""
    if FORTUNES_DIR.is_dir() and any(FORTUNES_DIR.iterdir()):
        return
    print("bench: installing Debian package 'fortunes' (apt-get)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "fortunes"], check=True)


def load_fortunes(min_chars: int = 20, max_chars: int = 600) -> list[Fortune]:
    """Every prose fortune entry, whitespace-normalised, with its category (file name)."""
    ensure_fortunes()
    out: list[Fortune] = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.suffix or not path.is_file() or path.name in NOT_PROSE:
            continue
        raw = path.read_bytes().decode("latin-1")
        for i, entry in enumerate(re.split(r"^%\s*$", raw, flags=re.MULTILINE)):
            text = " ".join(entry.split())
            if min_chars <= len(text) <= max_chars:
                out.append(Fortune(f"{path.name}-{i}", text, path.name))
    return out
