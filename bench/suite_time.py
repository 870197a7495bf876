"""What the default test suite costs, and what a server's cold start costs, on this machine.

    python -m bench.suite_time [--repo PATH] [--label NAME]

Runs the README's test command (``bash scripts/test.sh``, ruff and mypy included, with
``--durations=0``) in the checkout at ``--repo`` (default: this one; a worktree of an older commit
gives the "before" of a change, measured the same day on the same machine), then starts
``dces serve`` there three times per setting (``DCES_PRELOAD_LM`` off, as the tests run it, and
on, the default) and reads the process's CPU seconds when ``/readyz`` first says ready.

Records per label, in bench/results/test-suite.json (entries of other labels are kept) and .md:
the pytest wall time and test count, the whole command's wall and CPU seconds (its children,
servers and CLI runs included), the tests' durations summed per file, and the start-up CPU. The
suite's wall time depends on the machine's load; compare labels measured back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.collapse.service import free_port

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STARTS = 3


def run_suite(repo: Path) -> dict[str, Any]:
    env = {**os.environ, "DCES_EMBEDDING_DTYPE": "fp32", "PYTHONPATH": str(repo)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(["bash", "scripts/test.sh", "--durations=0", "-p", "no:cacheprovider"],
                          cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout + done.stderr
    summary = re.findall(r"=+ (\d+) passed.* in ([\d.]+)s", out)
    if done.returncode != 0 or not summary:
        sys.exit(f"suite_time: the suite failed in {repo}:\n{out[-4000:]}")
    per_file: dict[str, float] = {}
    for seconds, path in re.findall(r"^([\d.]+)s (?:call|setup|teardown)\s+(\S+?)::", out, re.M):
        per_file[path] = per_file.get(path, 0.0) + float(seconds)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"passed": int(summary[-1][0]), "pytest_seconds": float(summary[-1][1]),
            "command_seconds": round(wall, 1), "command_cpu_seconds": round(cpu, 1),
            "durations_sum": round(sum(per_file.values()), 1),
            "files": {f: round(s, 1) for f, s in
                      sorted(per_file.items(), key=lambda kv: -kv[1])[:12]}}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_start_cpu(repo: Path, preload_lm: bool) -> float:
    """CPU seconds of one ``dces serve`` process from exec to its first ready ``/readyz``."""
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(repo), "DCES_DATA_DIR": data,
               "DCES_PORT": str(port), "DCES_PRELOAD_LM": json.dumps(preload_lm),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "app.server"], cwd=repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").json().get("ready"):
                        return round(cpu_seconds(proc.pid), 2)
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            raise SystemExit("suite_time: the server did not get ready in 120 s")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    parser.add_argument("--label", default="current")
    args = parser.parse_args()
    repo = args.repo.resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                            capture_output=True, text=True).stdout.strip()
    entry: dict[str, Any] = {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
                             **run_suite(repo)}
    for preload in (False, True):
        starts = [server_start_cpu(repo, preload) for _ in range(STARTS)]
        entry[f"server_start_cpu_lm_{'on' if preload else 'off'}"] = statistics.median(starts)
    path = RESULTS / "test-suite.json"
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    data["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    data["runs"][args.label] = entry
    path.write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "test-suite.md").write_text(report(data))
    print(json.dumps(entry, indent=2))


def report(data: dict[str, Any]) -> str:
    runs = data["runs"]
    lines = ["# Test suite and server start-up cost", "",
             f"`python -m bench.suite_time --label NAME` ({data['machine']}). Wall times depend "
             "on the machine's load: compare labels measured back to back.", "",
             "| label | commit | date | tests passed | pytest s | command s | command CPU s | "
             "durations sum s | server start CPU s, LM off / on |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, r in runs.items():
        lines.append(f"| {label} | {r['commit']} | {r['date']} | {r['passed']} | "
                     f"{r['pytest_seconds']:.1f} | {r['command_seconds']:.1f} | "
                     f"{r['command_cpu_seconds']:.1f} | {r['durations_sum']:.1f} | "
                     f"{r['server_start_cpu_lm_off']:.2f} / {r['server_start_cpu_lm_on']:.2f} |")
    for label, r in runs.items():
        lines += ["", f"## {label}: the longest files (sum of their tests' durations, s)", ""]
        lines += [f"- {s:.1f} `{f}`" for f, s in r["files"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
