"""Service settings, read from ``DCES_*`` environment variables (pydantic-settings).

Every limit that a client must respect is here, so that ``/info`` can report them and the client
can split its requests to fit; every default is safe for a loopback sidecar.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
# The tenant of every run on a server with one token or none, and of runs from before tenants.
DEFAULT_TENANT = "default"
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TOKEN = re.compile(r"[\x21-\x7e]+")  # what an Authorization header can carry, no spaces


class TenantTokens(BaseModel):
    """``DCES_API_TOKENS_FILE`` as read at startup: each token with the tenant it stands for."""

    model_config = {"frozen": True}

    path: Path
    tokens: tuple[tuple[SecretStr, str], ...]  # (token, tenant), in file order


def read_tokens_file(value: Any) -> TenantTokens | None:
    """Reads ``tenant: token`` lines (``#`` comments and blank lines skipped; a tenant may have
    several tokens, a token only one tenant); the error names the file and the line."""
    if value is None or isinstance(value, TenantTokens):
        return value
    path = Path(str(value))

    def bad(where: str, message: str) -> PydanticCustomError:
        return PydanticCustomError("tokens_file", "{where}: {message}",
                                   {"where": where, "message": message})

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(str(path), f"cannot read it ({' '.join(str(exc).split())})") from exc
    tokens: list[tuple[SecretStr, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {number}"
        tenant, colon, token = (part.strip() for part in line.partition(":"))
        if not colon:
            raise bad(where, "expected 'tenant: token'")
        if not TENANT_NAME.fullmatch(tenant):
            raise bad(where, "the tenant must be 1-64 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        if not TOKEN.fullmatch(token):
            raise bad(where, "the token must be printable ASCII without spaces" if token
                             else "the token is empty")
        if token in first_line:
            raise bad(where, f"this token is also on line {first_line[token]}: a token must "
                             "name one tenant")
        first_line[token] = number
        tokens.append((SecretStr(token), tenant))
    if not tokens:
        raise bad(str(path), "no 'tenant: token' line")
    return TenantTokens(path=path, tokens=tuple(tokens))


def default_replica_id() -> str:
    """Unique per process, also for two processes on one host: host, pid and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Settings(BaseSettings):
    """Configuration of one service process; ``Settings(**overrides)`` wins over the environment."""

    model_config = SettingsConfigDict(env_prefix="DCES_", extra="forbid", frozen=True)

    # -- where and how it listens -------------------------------------------------------------
    host: str = Field(
        default="127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(default=8080, ge=0, le=65535)
    api_token: SecretStr | None = Field(
        default=None, description="When set, every /v1 route requires this bearer token.",
    )
    api_tokens_file: Annotated[
        TenantTokens | None, NoDecode, BeforeValidator(read_tokens_file)] = Field(
        default=None,
        description="Tenants: a file of 'tenant: token' lines. Every /v1 route requires one of "
                    "its tokens, and a run is seen only by the tenant whose token created it. "
                    "Instead of api_token.")

    # -- persistence --------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("data"), description="Holds the SQLite file by default.")
    database_url: str | None = Field(
        default=None, description="Any SQLAlchemy URL; default sqlite:///<data_dir>/dces.sqlite3."
    )

    # -- request limits (reported by /info) --------------------------------------------------------
    max_body_bytes: int = Field(default=32 * MiB, ge=1024)
    max_samples_per_request: int = Field(default=10_000, ge=1)
    max_samples_per_round: int = Field(
        default=1_000_000, ge=1, description="Across an upload's parts.")
    max_reference_samples: int = Field(default=200_000, ge=1, description="Per run, in total.")
    max_text_chars: int = Field(default=100_000, ge=1)
    max_id_chars: int = Field(default=512, ge=1)
    max_feedback_metrics: int = Field(default=64, ge=1)

    # -- jobs ---------------------------------------------------------------------------------
    sync_max_samples: int = Field(
        default=2_000, ge=0, description="Rounds with more samples answer 202 with a job to poll."
    )
    sync_wait_s: float = Field(
        default=60.0, gt=0, description="A synchronous round still running after this answers 202."
    )
    queue_size: int = Field(
        default=8, ge=1, description="Jobs waiting for the model worker; then 429.")
    storage_reserve_mb: int = Field(
        default=16, ge=0,
        description="A file of this size beside the SQLite database, released when the disk "
                    "fills so that runs can still be deleted to free space; 0: none.")
    queue_per_run: int = Field(
        default=2, ge=1,
        description="Jobs one run may have waiting for the model worker; then 429. Runs take "
                    "turns (round-robin), so one run's backlog never holds the others back.")
    job_max_attempts: int = Field(
        default=2, ge=1, description="A job the process died in this many times is failed.",
    )
    resume_jobs: bool = Field(
        default=True, description="Resume interrupted jobs at startup (else fail).")
    replica_id: str = Field(
        default_factory=default_replica_id, min_length=1, max_length=120,
        description="This process's name in the jobs it owns (jobs.owner). Several replicas on "
                    "one PostgreSQL need distinct names; a stable one (e.g. the pod's name) lets "
                    "a restarted replica resume its own jobs at once instead of after the lease. "
                    "Default: <hostname>-<pid>-<random>.")
    job_lease_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="A replica renews its jobs' heartbeat every third of this; a job whose "
                    "heartbeat is older is taken over by another replica.")
    upload_ttl_s: float = Field(
        default=24 * 3600.0, gt=0, description="Unsubmitted uploads expire.")
    shutdown_grace_s: float = Field(
        default=20.0, ge=0, description="On SIGTERM, how long the running job may take to finish."
    )

    # -- models -------------------------------------------------------------------------------
    embedding_model: str | None = Field(
        default=None, description="None: the bundled all-MiniLM-L6-v2.")
    embedding_dtype: Literal["auto", "bf16", "fp32"] = "auto"
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="config.embed.backend of every run: torch (sentence-transformers), onnx or "
                    "onnx-int8 (ONNX Runtime on the CPU, exported from the model on first use "
                    "and cached under DCES_CACHE_DIR); auto: torch on a GPU, onnx on the CPU. "
                    "See bench/results/embedding.md.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the embedder and the LM run (config.embed.device, config.edit.device "
                    "of every run): auto is cuda when torch sees a GPU, else cpu.")
    lm_model: str | None = Field(
        default=None, description="None: the bundled SmolLM2-135M-Instruct.")
    allowed_models: list[str] = Field(
        default_factory=list,
        description="Models a run's config may name (embed.model, edit.model) besides the two "
                    "above; a JSON list. A model name is a path or hub id the server opens.")
    allow_any_model: bool = Field(
        default=False, description="Let a run's config name any model (trusted callers only).")
    preload_lm: bool = Field(
        default=True, description="Load the editing LM at startup, not on first use.")
    max_loaded_models: int = Field(default=2, ge=1, description="Per kind (embedder, LM), LRU.")
    worker_nice: int = Field(
        default=5, ge=0, le=19,
        description="Nice value of the model worker thread (Linux): probes and API first.")
    ray_address: str | None = Field(
        default=None,
        description="A Ray cluster (host:port, or auto) that embeds rounds with at least "
                    "ray_min_samples new texts (curation.ray_executor); clustering, selection "
                    "and health stay here. None: every round embeds here. Needs dces[ray].")
    ray_min_samples: int = Field(
        default=20_000, ge=0,
        description="Smaller rounds embed here even with ray_address: starting the actors and "
                    "loading the model in each costs seconds.")
    ray_actors: int = Field(
        default=2, ge=1, description="Embedding actors on the Ray cluster, 1 CPU each.")

    # -- operations ---------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    metrics_runs: int = Field(
        default=20, ge=0, le=10_000,
        description="Runs with their own series (label `run`) on /metrics: the ones that "
                    "committed a round most recently; older runs' series are removed. 0: none.")
    fault_injection: bool = Field(
        default=False,
        description="Expose POST /debug/crash-worker, /debug/hold-worker, /debug/pause-worker, "
                    "/debug/release-worker and /debug/raise-error (tests only).",
    )

    @field_validator("device")
    @classmethod
    def _cuda_is_there(cls, value: str) -> str:
        if value == "cuda":
            from curation.device import cuda_available

            if not cuda_available():
                raise ValueError("cuda: no CUDA device is available here (torch.cuda."
                                 "is_available() is false); use cpu or auto")
        return value

    @model_validator(mode="after")
    def _request_within_round_limit(self) -> Settings:
        if self.max_samples_per_request > self.max_samples_per_round:
            raise ValueError("max_samples_per_request must not exceed max_samples_per_round")
        if self.api_token is not None and self.api_tokens_file is not None:
            raise PydanticCustomError(
                "tokens", "set DCES_API_TOKEN or DCES_API_TOKENS_FILE, not both (runs created "
                          f"with DCES_API_TOKEN belong to the tenant '{DEFAULT_TENANT}')")
        return self

    @property
    def tenants(self) -> bool:
        """Whether runs are kept apart by tenant (``api_tokens_file``)."""
        return self.api_tokens_file is not None

    def api_tokens(self) -> list[tuple[SecretStr, str]]:
        """Every accepted bearer token with its tenant; empty: no auth."""
        if self.api_tokens_file is not None:
            return list(self.api_tokens_file.tokens)
        return [(self.api_token, DEFAULT_TENANT)] if self.api_token is not None else []

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dces.sqlite3').resolve()}"

    def limits(self) -> dict[str, int]:
        """The request limits a client needs to split its work (``/info``)."""
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_samples_per_request": self.max_samples_per_request,
            "max_samples_per_round": self.max_samples_per_round,
            "max_reference_samples": self.max_reference_samples,
            "max_text_chars": self.max_text_chars,
            "max_id_chars": self.max_id_chars,
            "max_feedback_metrics": self.max_feedback_metrics,
            "sync_max_samples": self.sync_max_samples,
            "queue_size": self.queue_size,
            "queue_per_run": self.queue_per_run,
        }
