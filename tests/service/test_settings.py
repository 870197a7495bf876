"""Settings come from DCES_* variables, with safe defaults and named validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_defaults_bind_loopback_and_keep_data_in_a_sqlite_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DCES_DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path)
    assert settings.host == "127.0.0.1" and settings.api_token is None
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/dces.sqlite3"
    assert settings.limits()["max_samples_per_request"] == settings.max_samples_per_request


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCES_PORT", "9123")
    monkeypatch.setenv("DCES_API_TOKEN", "tok-93xq")
    monkeypatch.setenv("DCES_DATABASE_URL", "postgresql+psycopg://u@db/dces")
    monkeypatch.setenv("DCES_RESUME_JOBS", "false")
    settings = Settings()
    assert settings.port == 9123 and settings.resume_jobs is False
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "tok-93xq"
    assert "tok-93xq" not in repr(settings)  # the token never reaches a log line
    assert settings.resolved_database_url == "postgresql+psycopg://u@db/dces"
    assert Settings(port=9000).port == 9000  # explicit overrides (dces serve --port) win


@pytest.mark.parametrize(("env", "field"), [
    ({"DCES_QUEUE_SIZE": "0"}, "queue_size"),
    ({"DCES_PORT": "http"}, "port"),
    ({"DCES_MAX_SAMPLES_PER_REQUEST": "10", "DCES_MAX_SAMPLES_PER_ROUND": "5"},
     "max_samples_per_request"),
])
def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                     field: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ValidationError, match="prot"):
        Settings(prot=1)  # type: ignore[call-arg]
