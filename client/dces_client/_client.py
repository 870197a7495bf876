"""``DCESClient``: a small httpx client for the DCES service, for training jobs.

Imports only httpx and the standard library (no torch, no engine), so it costs a training job
nothing to import and installs on its own (``pip install ./client``). It

- retries connection errors, and 429/503 answers honouring ``Retry-After``, for up to
  ``retry_for`` seconds (a restarting sidecar is waited for, not reported as an error);
- retries a lost response only where that is safe: reads, idempotent writes, and round POSTs,
  which always carry an ``Idempotency-Key`` (so a retry returns the same round, never a second);
- splits work by the limits ``/info`` reports. A round larger than one request goes to an
  *upload*: its parts are PUT one by one (each retry-safe), then ONE round is curated from the
  whole upload, so the run never sees several rounds for one call;
- waits for 202 jobs by long-polling ``GET /v1/jobs/{id}?wait=``, reporting each poll's stage and
  progress to an optional ``on_progress`` callback.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

Sample = Mapping[str, Any]
# Called with (stage, fraction) after each poll of a job, like the engine's progress callback; the
# stage is the job's status ("queued") until the worker has started it.
ProgressCallback = Callable[[str, float], None]
RETRY_STATUSES = (429, 503)
# The request never reached the service: always safe to send again.
RETRY_ALWAYS: tuple[type[Exception], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The response was lost: safe to send again only for idempotent requests.
RETRY_IF_SAFE: tuple[type[Exception], ...] = (
    httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadTimeout)
BODY_MARGIN = 0.9  # fill request bodies to 90% of max_body_bytes (JSON framing, headers)
LONG_POLL_S = 30.0  # a job poll returns when the job finishes, or after this long
PROGRESS_POLL_S = 2.0  # ... or after this long when someone watches its progress


class DCESError(Exception):
    """An error answer from the service; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(f"{status} {problem.get('title', 'error')}: "
                         f"{problem.get('detail', '')}".rstrip(": "))

    def __reduce__(self) -> tuple[type[DCESError], tuple[int, dict[str, Any]]]:
        """Picklable, so the error survives a process pool (e.g. a multi-process trainer)."""
        return (DCESError, (self.status, self.problem))

    @classmethod
    def from_response(cls, response: httpx.Response) -> DCESError:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        if not isinstance(body, dict):
            body = {"detail": str(body)}
        body.setdefault("title", response.reason_phrase)
        return cls(response.status_code, body)


class DCESClient:
    """One method per resource of the DCES API; see the service's ``/docs`` for the bodies."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", token: str | None = None, *,
                 timeout: float = 90.0, retry_for: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=5.0), transport=transport)
        self.retry_for = retry_for
        self._info: dict[str, Any] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DCESClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- ops ------------------------------------------------------------------------------------

    def info(self, refresh: bool = False) -> dict[str, Any]:
        """Version, models and limits (cached: the limits decide how requests are split)."""
        if self._info is None or refresh:
            self._info = self._call("GET", "/info", safe=True)
        return self._info

    @property
    def limits(self) -> dict[str, int]:
        return dict(self.info()["limits"])

    def ready(self) -> bool:
        """One /readyz probe; False while loading, draining, unreachable or if the worker died."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"DCES at {self._http.base_url} not ready after {timeout} s")
            time.sleep(interval)

    # -- runs -----------------------------------------------------------------------------------

    def create_run(self, name: str | None = None, config: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
        """A new run; ``config`` holds curation overrides, e.g. ``{"ratio": {"r0": 0.4}}``."""
        return self._call("POST", "/v1/runs", json={"name": name, "config": dict(config or {})})

    def list_runs(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", "/v1/runs", params={"limit": limit, "offset": offset}, safe=True)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{run_id}", safe=True)

    def delete_run(self, run_id: str) -> None:
        self._call("DELETE", f"/v1/runs/{run_id}")

    def get_state(self, run_id: str) -> dict[str, Any] | None:
        return self._call("GET", f"/v1/runs/{run_id}/state", safe=True)

    def add_reference(self, run_id: str, samples: Sequence[Sample]) -> dict[str, int]:
        """Append real reference samples, in as many requests as the limits need (each retry-safe:
        re-sending a stored sample is a no-op)."""
        totals = {"added": 0, "unchanged": 0, "total": 0}
        for chunk in self._split(samples):
            out = self._call("POST", f"/v1/runs/{run_id}/reference", json={"samples": chunk},
                             safe=True)
            totals = {"added": totals["added"] + out["added"],
                      "unchanged": totals["unchanged"] + out["unchanged"], "total": out["total"]}
        return totals

    def get_reference(self, run_id: str, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{run_id}/reference",
                          params={"limit": limit, "offset": offset}, safe=True)

    # -- rounds ---------------------------------------------------------------------------------

    def curate_round(self, run_id: str, samples: Sequence[Sample], budget: int, *,
                     feedback: Mapping[str, float] | None = None,
                     idempotency_key: str | None = None, wait: bool = True,
                     timeout: float | None = None,
                     on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Curate the run's next round from ``samples``; returns the round (or, with
        ``wait=False``, the job when the service answers 202).

        Pass your own ``idempotency_key`` (e.g. f"{run}-{step}") to make a re-run of your
        training script after a crash safe: the service returns the round it already curated.
        ``on_progress`` sees the job's stage and progress while a large round is curated.
        """
        key = idempotency_key or uuid.uuid4().hex
        body: dict[str, Any] = {"budget": budget}
        if feedback is not None:
            body["feedback"] = dict(feedback)
        parts = list(self._split(samples))
        upload = None
        if len(parts) == 1:
            body["samples"] = parts[0]
        else:
            upload = self._call("POST", f"/v1/runs/{run_id}/uploads")["id"]
            for number, part in enumerate(parts, start=1):
                self._call("PUT", f"/v1/runs/{run_id}/uploads/{upload}/parts/{number}",
                           json={"samples": part}, safe=True)
            body["upload"] = upload
        deadline = None if timeout is None else time.monotonic() + timeout
        for _attempt in range(3):  # a job that failed server-side is re-run by the same key
            response = self._send("POST", f"/v1/runs/{run_id}/rounds", json=body,
                                  headers={"Idempotency-Key": key}, safe=True)
            if upload is not None and response.headers.get("Idempotent-Replayed"):
                self._discard_upload(run_id, upload)  # this call's upload was not needed
            if response.status_code != 202:
                return dict(response.json())
            job = response.json()
            if not wait:
                return dict(job)
            try:
                job = self.wait_job(job["id"], None if deadline is None
                                    else max(0.0, deadline - time.monotonic()), on_progress)
            except DCESError as exc:
                if exc.status < 500:
                    raise
                continue
            return self.get_round(run_id, job["round"])
        raise DCESError(503, {"title": "Round not curated",
                              "detail": f"the service failed the round job 3 times (key {key})"})

    def list_rounds(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/runs/{run_id}/rounds", safe=True)["rounds"])

    def get_round(self, run_id: str, n: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{run_id}/rounds/{n}", safe=True)

    def post_feedback(self, run_id: str, metrics: Mapping[str, float], round: int | None = None
                      ) -> dict[str, Any]:
        """Training metrics of a finished round (default: the latest); they feed the next one."""
        body: dict[str, Any] = {"metrics": dict(metrics)}
        if round is not None:
            body["round"] = round
        return self._call("POST", f"/v1/runs/{run_id}/feedback", json=body, safe=True)

    def list_feedback(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/runs/{run_id}/feedback", safe=True)["feedback"])

    def clusters(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{run_id}/clusters", safe=True)

    def health(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/runs/{run_id}/health", safe=True)

    # -- jobs -----------------------------------------------------------------------------------

    def get_job(self, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}", params={"wait": wait}, safe=True)

    def list_jobs(self, run_id: str | None = None, status: str | None = None
                  ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"run_id": run_id, "status": status}.items() if v is not None}
        return list(self._call("GET", "/v1/jobs", params=params, safe=True)["jobs"])

    def wait_job(self, job_id: str, timeout: float | None = None,
                 on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Long-poll until the job succeeds; a failed job raises :class:`DCESError`.

        ``on_progress(stage, fraction)`` is called after every poll; with it, polls return at
        least every ``PROGRESS_POLL_S`` so that the progress it sees is fresh.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        poll_s = LONG_POLL_S if on_progress is None else PROGRESS_POLL_S
        while True:
            remaining = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            job = self.get_job(job_id, wait=max(0.0, remaining))
            if on_progress is not None:
                on_progress(job["stage"] or job["status"], float(job["progress"]))
            if job["status"] == "succeeded":
                return job
            if job["status"] == "failed":
                error = job.get("error") or {"title": "Job failed", "detail": job.get("note")}
                raise DCESError(int(error.get("status", 500)), {**error, "job": job_id})
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")

    # -- stateless ------------------------------------------------------------------------------

    def curate(self, samples: Sequence[Sample], budget: int, *,
               config: Mapping[str, Any] | None = None, reference: Sequence[Sample] = (),
               state: Mapping[str, Any] | None = None,
               feedback: Mapping[str, float] | None = None) -> dict[str, Any]:
        """One stateless round (``{"result", "state"}``); it must fit one request, since a
        stateless round cannot be staged: use a run for more."""
        body: dict[str, Any] = {"samples": list(samples), "budget": budget,
                                "config": dict(config or {}), "reference": list(reference)}
        if state is not None:
            body["state"] = dict(state)
        if feedback is not None:
            body["feedback"] = dict(feedback)
        # No read timeout: a stateless round answers only when curated (there is no job).
        return self._call("POST", "/v1/curate", json=body, safe=True,
                          timeout=httpx.Timeout(None, connect=5.0))

    # -- plumbing -------------------------------------------------------------------------------

    def _split(self, samples: Sequence[Sample]) -> Iterator[list[dict[str, Any]]]:
        """Chunks within max_samples_per_request and ~90% of max_body_bytes, in order."""
        limits = self.limits
        max_count = limits["max_samples_per_request"]
        max_bytes = int(limits["max_body_bytes"] * BODY_MARGIN)
        chunk: list[dict[str, Any]] = []
        size = 0
        for sample in samples:
            item = dict(sample)
            item_size = len(json.dumps(item, ensure_ascii=False).encode()) + 1
            if chunk and (len(chunk) >= max_count or size + item_size > max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += item_size
        if chunk or not samples:
            yield chunk

    def _discard_upload(self, run_id: str, upload: str) -> None:
        with contextlib.suppress(DCESError, httpx.TransportError):  # it expires anyway
            self._call("DELETE", f"/v1/runs/{run_id}/uploads/{upload}")

    def _call(self, method: str, path: str, *, safe: bool = False, **kwargs: Any) -> Any:
        response = self._send(method, path, safe=safe, **kwargs)
        return None if response.status_code == 204 else response.json()

    def _send(self, method: str, path: str, *, safe: bool = False, **kwargs: Any
              ) -> httpx.Response:
        """One request with retries. Connection failures are always retried (nothing reached
        the service); lost responses only when ``safe`` (the request is idempotent)."""
        deadline = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            retryable = RETRY_ALWAYS + (RETRY_IF_SAFE if safe else ())
            try:
                response = self._http.request(method, path, **kwargs)
            except retryable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_backoff(attempt))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and time.monotonic() < deadline:
                time.sleep(min(_retry_after(response) or _backoff(attempt),
                               max(0.0, deadline - time.monotonic())))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise DCESError.from_response(response)
            return response


def _backoff(attempt: int) -> float:
    return float(min(10.0, 0.25 * 2 ** attempt))


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
