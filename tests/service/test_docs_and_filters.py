"""Offline /docs and /redoc, and the sample filters and paging of GET /rounds/{n}, on one app in
this process.

The app requires a token, so the same app also shows that the docs pages and their assets stay
open while /v1 does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import jsonschema_rs
import pytest

from app.api.openapi import _sections
from curation.bounds import iter_bounds
from curation.config import CurationConfig

from .conftest import NO_LM, InProcessServer

TOKEN = "docs-and-filters-token"
ROUND_PATH = "/v1/runs/{run_id}/rounds/{n}"


@pytest.fixture(scope="module")
def server(start_app: Callable[..., InProcessServer]) -> InProcessServer:
    return start_app(api_token=TOKEN)


@pytest.fixture(scope="module")
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(server: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60, transport=server.transport) as client:
        yield client


@pytest.fixture(scope="module")
def curated(http: httpx.Client, fortunes: list[dict[str, Any]]) -> tuple[str, httpx.Response]:
    """(the round's URL, the POST's answer): 60 fortunes, budget 20."""
    run = http.post("/v1/runs", json={"name": "filters", "config": NO_LM}).json()["id"]
    posted = http.post(f"/v1/runs/{run}/rounds", json={"budget": 20, "samples": fortunes[:60]})
    assert posted.status_code == 200, posted.text
    return f"/v1/runs/{run}/rounds/{posted.json()['round']}", posted


class AssetRefs(HTMLParser):
    """Every ``<script src>`` and ``<link href>`` of a page, with the link's ``rel``."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(str(a["src"]))
        elif tag == "link" and a.get("href"):
            self.links.append((str(a.get("rel") or ""), str(a["href"])))


@pytest.mark.parametrize(("page", "needs_css"), [("/docs", True), ("/redoc", False)])
def test_docs_pages_load_every_asset_from_the_service_without_a_token(
    anonymous: httpx.Client, page: str, needs_css: bool
) -> None:
    response = anonymous.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    refs = AssetRefs()
    refs.feed(response.text)
    urls = refs.scripts + [href for _, href in refs.links]
    assert refs.scripts, response.text
    assert any(rel == "stylesheet" for rel, _ in refs.links) == needs_css, refs.links
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from afar"
    expected = {url: "javascript" for url in refs.scripts}
    expected.update({href: "css" if rel == "stylesheet" else "image/" for rel, href in refs.links})
    for url, kind in expected.items():
        asset = anonymous.get(url)
        assert asset.status_code == 200, url
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > (10_000 if kind != "image/" else 100), url
    assert anonymous.get("/v1/runs").status_code == 401  # the token is required where it was


def test_an_unknown_asset_is_a_problem_404(anonymous: httpx.Client,
                                           problem: Callable[..., Any]) -> None:
    problem(anonymous.get("/static/docs/nothing-here.js"), 404)


def test_no_filter_answers_the_stored_round_unchanged(
    http: httpx.Client, curated: tuple[str, httpx.Response]
) -> None:
    url, posted = curated
    assert http.get(url).text == posted.text


@pytest.mark.parametrize("query", [
    {"cluster": 0}, {"selected": False}, {"selected": True}, {"cluster": 0, "selected": False},
    {"role": "center"}, {"role": "edge"}, {"role": "replay"}, {"reason": "quota_filled"},
    {"reason": "no-such-reason"}, {"cluster": 1, "role": "edge", "selected": True},
])
def test_filters_keep_exactly_the_matching_samples(
    http: httpx.Client, curated: tuple[str, httpx.Response], query: dict[str, Any]
) -> None:
    url, posted = curated
    full = posted.json()
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    response = http.get(url, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = [s for s in full["samples"] if all(s[k] == v for k, v in query.items())]
    assert body["samples"] == expected
    assert {k: v for k, v in body.items() if k != "samples"} == \
        {k: v for k, v in full.items() if k != "samples"}


def test_the_round_has_samples_for_the_filters_to_split(
    curated: tuple[str, httpx.Response]
) -> None:
    """The round the filter tests read is not degenerate: every filter above can go wrong."""
    samples = curated[1].json()["samples"]
    assert len(samples) == 60 and sum(s["selected"] for s in samples) == 20
    assert {s["role"] for s in samples} >= {"center", "edge", None}
    assert len({s["cluster"] for s in samples}) > 1
    assert any(s["reason"] == "quota_filled" for s in samples)


@pytest.mark.parametrize(("query", "parameter"), [
    ("cluster=abc", "query.cluster"), ("cluster=-1", "query.cluster"),
    ("role=middle", "query.role"), ("selected=maybe", "query.selected"),
    ("reason=", "query.reason"), ("clutser=0", "query.clutser"),
    ("cluster=0&selectd=false", "query.selectd"), ("limit=0", "query.limit"),
    ("limit=-1", "query.limit"), ("limit=many", "query.limit"), ("limit=10001", "query.limit"),
    ("offset=-1", "query.offset"), ("offset=1.5", "query.offset"),
])
def test_a_bad_or_unknown_filter_is_a_422_naming_it(
    http: httpx.Client, curated: tuple[str, httpx.Response], problem: Callable[..., Any],
    query: str, parameter: str
) -> None:
    body = problem(http.get(f"{curated[0]}?{query}"), 422, parameter)
    assert [e["field"] for e in body["errors"]] == [parameter]


def test_filters_are_documented_in_openapi(anonymous: httpx.Client) -> None:
    operation = anonymous.get("/openapi.json").json()["paths"][ROUND_PATH]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"cluster", "role", "selected", "reason", "offset", "limit"}
    assert all(p["description"] and not p["required"] for p in query.values())
    assert query["limit"]["schema"]["anyOf"][0]["maximum"] == 10_000
    assert "X-Total-Count" in operation["responses"]["200"]["headers"]


def test_every_setting_is_documented_with_its_bound(anonymous: httpx.Client) -> None:
    schemas = anonymous.get("/openapi.json").json()["components"]["schemas"]
    sections = {c.path: c.__name__ for c in _sections(CurationConfig)}
    checked = 0
    for dotted, bound in iter_bounds(CurationConfig):
        section, name = dotted.rsplit(".", 1)
        prop = schemas[sections[section]]["properties"][name]
        assert prop["description"].endswith(f"Must be {bound.text}."), dotted
        numeric = next((b for b in prop.get("anyOf", [prop])
                        if b.get("type") in ("integer", "number")), None)
        if numeric is not None and bound.high is not None:
            assert numeric["exclusiveMaximum" if bound.high_open else "maximum"] == bound.high
            checked += 1
    assert checked > 20
    assert schemas["RatioConfig"]["properties"]["r_max"]["maximum"] == 1
    assert schemas["HealthConfig"]["properties"]["mode_loss_alpha"]["minimum"] == 1e-4


def test_every_error_status_is_documented_as_a_problem(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = {code for code in responses if code[0] in "45"}
            expected = {"500"} | ({"401", "422", "503"} if path.startswith("/v1/") else set())
            expected |= {"404"} if "{" in path else set()
            assert expected <= errors, (method, path, errors)
            if path.startswith("/v1/"):
                assert operation["security"] == [{"bearer": []}], (method, path)
            for code in errors - ({"503"} if path == "/readyz" else set()):
                content = responses[code]["content"]
                assert list(content) == ["application/problem+json"], (method, path, code)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/v1/runs/no-such-run", 404), ("get", "/v1/jobs/no-such-job", 404),
    ("get", "/v1/runs?limit=-1", 422), ("post", "/v1/runs", 401),
])
def test_error_answers_match_the_documented_problem_schema(
        http: httpx.Client, anonymous: httpx.Client, method: str, path: str, status: int) -> None:
    client = anonymous if status == 401 else http
    response = client.request(method, path, json={} if method == "post" else None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    spec = anonymous.get("/openapi.json").json()
    documented = spec["paths"][path.split("?")[0].replace("no-such-run", "{run_id}").replace(
        "no-such-job", "{job_id}")][method]["responses"][str(status)]
    assert documented["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
    schema = {**spec["components"]["schemas"]["Problem"], "components": spec["components"]}
    jsonschema_rs.validate(schema, response.json())


@pytest.mark.parametrize(("query", "window"), [
    ({"limit": 7}, slice(0, 7)), ({"offset": 5, "limit": 7}, slice(5, 12)),
    ({"offset": 55}, slice(55, None)), ({"offset": 60, "limit": 3}, slice(60, 60)),
    ({"selected": False, "offset": 2, "limit": 4}, slice(2, 6)),
])
def test_offset_and_limit_page_through_the_matching_samples(
    http: httpx.Client, curated: tuple[str, httpx.Response], query: dict[str, Any],
    window: slice
) -> None:
    url, posted = curated
    matching = [s for s in posted.json()["samples"]
                if query.get("selected") in (None, s["selected"])]
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    response = http.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.json()["samples"] == matching[window]
    assert response.headers["X-Total-Count"] == str(len(matching))


def test_an_unfiltered_round_says_how_many_samples_it_has(
    http: httpx.Client, curated: tuple[str, httpx.Response]
) -> None:
    assert http.get(curated[0]).headers["X-Total-Count"] == "60"
