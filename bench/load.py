"""Load on one real `dces serve`: concurrent training jobs, each curating rounds of its own run.

    python -m bench.load [--clients 8 32] [--seconds 60] [--samples 60] [--budget 20]

Each client thread owns a run and, for ``--seconds``, posts round after round (real fortunes,
no LM: the rounds are the service's real work, kept short so that many queue up), each with its
own ``Idempotency-Key``; on ``429`` it waits the ``Retry-After`` it was given and retries the
same key, and every 20th round it also re-sends the previous key (a retry of an accepted round).
A prober times ``/readyz`` meanwhile. Afterwards every run's stored rounds are counted against
what its client was told. Recorded: answers by status, 5xx (must be 0), 429s with and without
Retry-After, rounds acknowledged vs stored (exactly once), ``/readyz`` p50/p95/max, and the
fairness of rounds per client (min, max, Jain's index: 1 is perfectly even).

Writes bench/results/load.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.collapse.service import dces_service
from bench.corpora import load_fortunes
from bench.machine import machine

RESULTS = Path(__file__).parent / "results"
NO_LM = {"edit": {"enabled": False}, "score": {"lm_fallback": False}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


class Client(threading.Thread):
    """One training job: its run, its rounds, every answer it got."""

    def __init__(self, url: str, index: int, texts: list[str], args: argparse.Namespace,
                 stop_at: float) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=600)
        self.index, self.texts, self.args, self.stop_at = index, texts, args, stop_at
        self.statuses: Counter[int] = Counter()
        self.no_retry_after = 0
        self.acknowledged: set[int] = set()  # round numbers the service answered with
        self.replays_matched = 0
        self.run_id = self.http.post("/v1/runs", json={"name": f"load-{index}",
                                                       "config": NO_LM}).json()["id"]

    def post(self, n: int) -> httpx.Response:
        start = (self.index * 997 + n * self.args.samples) % (len(self.texts) - self.args.samples)
        body = {"budget": self.args.budget, "samples": [
            {"id": f"c{self.index}-r{n}-{i}", "text": t}
            for i, t in enumerate(self.texts[start:start + self.args.samples])]}
        while True:
            answer = self.http.post(f"/v1/runs/{self.run_id}/rounds", json=body,
                                    headers={"Idempotency-Key": f"c{self.index}-{n}"})
            self.statuses[answer.status_code] += 1
            if answer.status_code != 429:
                return answer
            retry = answer.headers.get("retry-after")
            self.no_retry_after += retry is None
            time.sleep(min(float(retry or 1), 5.0))

    def run(self) -> None:
        n = 0
        while time.monotonic() < self.stop_at:
            answer = self.post(n)
            if answer.status_code == 202:  # queued past sync_wait_s: wait for its job
                answer = self.wait_job(answer.json()["id"])
            if answer.status_code == 200:
                self.acknowledged.add(int(answer.json()["round"]))
                if n % 20 == 19:  # a retry of the round just accepted: the same round back
                    again = self.post(n)
                    self.replays_matched += again.json().get("round") == answer.json()["round"]
            n += 1

    def wait_job(self, job_id: str) -> httpx.Response:
        """The job's round once it succeeded (as a 200), or the job's last answer."""
        while True:
            job = self.http.get(f"/v1/jobs/{job_id}", params={"wait": 30})
            status = job.json().get("status")
            if status == "succeeded":
                return httpx.Response(200, json={"round": job.json()["round"]})
            if status == "failed":
                self.statuses[int(job.json()["error"].get("status", 500))] += 1
                return job

    def stored(self) -> list[int]:
        rounds = self.http.get(f"/v1/runs/{self.run_id}/rounds").json()["rounds"]
        return [int(r["round"]) for r in rounds]


def probe(url: str, stop_at: float, latencies: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            http.get("/readyz")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.2)


def scenario(url: str, clients: int, texts: list[str], args: argparse.Namespace
             ) -> dict[str, Any]:
    stop_at = time.monotonic() + args.seconds
    threads = [Client(url, i, texts, args, stop_at) for i in range(clients)]
    latencies: list[float] = []
    prober = threading.Thread(target=probe, args=(url, stop_at, latencies), daemon=True)
    started = time.perf_counter()
    for t in [*threads, prober]:
        t.start()
    for t in [*threads, prober]:
        t.join()
    seconds = time.perf_counter() - started
    statuses: Counter[int] = Counter()
    for t in threads:
        statuses.update(t.statuses)
    per_client = [len(t.acknowledged) for t in threads]
    stored = [t.stored() for t in threads]
    exactly_once = all(sorted(s) == sorted(t.acknowledged) == list(range(len(s)))
                       for s, t in zip(stored, threads, strict=True))
    jain = (sum(per_client) ** 2 / (len(per_client) * sum(x * x for x in per_client))
            if any(per_client) else 0.0)
    ms = sorted(t * 1000 for t in latencies)
    return {
        "clients": clients,
        "seconds": round(seconds, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "429_without_retry_after": sum(t.no_retry_after for t in threads),
        "rounds_acknowledged": sum(per_client),
        "rounds_stored": sum(len(s) for s in stored),
        "stored_exactly_once": exactly_once,
        "retries_answered_with_the_same_round": sum(t.replays_matched for t in threads),
        "rounds_per_client": {"min": min(per_client), "max": max(per_client),
                              "median": statistics.median(per_client), "jain": round(jain, 3)},
        "readyz_ms": {"p50": round(ms[len(ms) // 2], 1), "p95": round(ms[int(len(ms) * 0.95)], 1),
                      "max": round(ms[-1], 1), "probes": len(ms)},
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Load: concurrent training jobs on one `dces serve`",
        "",
        f"`{results['command']}` — {results['when']}, {results['machine']['cores']} cores "
        f"({results['machine']['cpu']}). Rounds of {results['setup']['samples']} fortunes, "
        f"budget {results['setup']['budget']}, no LM; queue_size 8, queue_per_run 2 (defaults).",
        "",
        "| clients | seconds | answers by status | 5xx | 429 without Retry-After | rounds "
        "acknowledged / stored | exactly once | rounds per client min / median / max | Jain "
        "| /readyz p50 / p95 / max ms |",
        "|" + "---|" * 10,
    ]
    for s in results["scenarios"]:
        per = s["rounds_per_client"]
        lat = s["readyz_ms"]
        lines.append(
            f"| {s['clients']} | {s['seconds']} | {s['statuses']} | {s['server_errors']} | "
            f"{s['429_without_retry_after']} | {s['rounds_acknowledged']} / {s['rounds_stored']} "
            f"| {s['stored_exactly_once']} | {per['min']} / {per['median']} / {per['max']} | "
            f"{per['jain']} | {lat['p50']} / {lat['p95']} / {lat['max']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    texts = [f.text for f in load_fortunes()]
    scenarios = []
    with dces_service(Path("/tmp/dces-load-serve.log")) as service:
        url = service.wait_ready()
        for clients in args.clients:
            scenarios.append(scenario(url, clients, texts, args))
            print(json.dumps(scenarios[-1]), flush=True)
    results = {
        "command": shlex.join(["python", "-m", "bench.load",
                               *(argv if argv is not None else sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "setup": {"seconds": args.seconds, "samples": args.samples, "budget": args.budget},
        "scenarios": scenarios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "load.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
