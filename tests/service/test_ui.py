"""The dashboard at /ui in a real browser: Debian's Chromium driven by playwright, against a
real server that requires a token, with a run of 3 rounds.

Chromium comes from the system (scripts/browser.sh installs Debian's package; ``DCES_CHROMIUM``
names another binary); playwright never downloads a browser. Without Chromium the tests skip
and say so. ``DCES_UI_SCREENSHOT=docs/ui.png`` also writes the 1280×800 view there (the
README's screenshot).
"""

from __future__ import annotations

import collections
import os
import shutil
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from .conftest import NO_LM, DCESServer

TOKEN = "ui-test-token"
PAGE_SIZE = 20  # samples per page in app/ui/static/main.js
WIDE = ViewportSize(width=1280, height=800)
NARROW = ViewportSize(width=390, height=844)


def chromium_path() -> str | None:
    named = os.environ.get("DCES_CHROMIUM")
    if named:
        return named
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("needs Chromium: no `chromium` on PATH (bash scripts/browser.sh installs "
                    "Debian's package; DCES_CHROMIUM names another binary)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(start_server: Callable[..., DCESServer]) -> DCESServer:
    return start_server(api_token=TOKEN)


@pytest.fixture(scope="module")
def http(server: DCESServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(scope="module")
def run(http: httpx.Client, fortunes: list[dict[str, Any]]) -> str:
    """A run with reference text from 38 categories and 3 rounds drawn from 38, 6 and 3 of them
    (a narrowing generator): 45 candidates and a budget of 15 each, part of which replays
    reference exemplars of the clusters the candidates lost."""
    by_category: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for sample in fortunes:
        by_category[sample["category"]].append({"id": sample["id"], "text": sample["text"]})
    categories = sorted(by_category, key=lambda c: (-len(by_category[c]), c))[:38]
    config = {**NO_LM, "replay": {"fraction": 0.2}}
    run_id = http.post("/v1/runs", json={"name": "narrowing", "config": config}).json()["id"]
    reference = [s for c in categories for s in by_category[c][:3]]
    assert http.post(f"/v1/runs/{run_id}/reference", json={"samples": reference}).is_success
    for n, width in enumerate((38, 6, 3)):
        pool = [s for c in categories[:width] for s in by_category[c][3:]]
        samples = pool[n::len(pool) // 45][:45]
        posted = http.post(f"/v1/runs/{run_id}/rounds", json={"budget": 15, "samples": samples})
        assert posted.status_code == 200, posted.text
    return str(run_id)


class Dashboard:
    """A page with its console errors and uncaught exceptions recorded."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.goto(f"{url}/ui")

    def sign_in(self, token: str) -> None:
        expect(self.page.locator("#token-form")).to_be_visible()
        self.page.fill("#token", token)
        self.page.click("#token-form button")

    def sample_ids(self) -> list[str]:
        return self.page.locator("#samples li").evaluate_all("els => els.map(e => e.dataset.id)")


@pytest.fixture
def open_page(browser: Browser, server: DCESServer) -> Iterator[Callable[..., Dashboard]]:
    """``open_page(viewport=WIDE)``: /ui in a fresh browser context (no stored token)."""
    contexts = []

    def open_(viewport: ViewportSize = WIDE) -> Dashboard:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        return Dashboard(context.new_page(), server.url)

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def signed_in(open_page: Callable[..., Dashboard], run: str) -> Dashboard:
    """The dashboard after entering the token, showing the run's samples."""
    board = open_page()
    board.sign_in(TOKEN)
    expect(board.page.locator(f'#run-list button[data-run="{run}"]')).to_have_class("active")
    expect(board.page.locator("#samples li").first).to_be_visible()
    return board


def test_without_the_token_the_page_asks_for_it_and_shows_no_data(
        open_page: Callable[..., Dashboard], run: str) -> None:
    board = open_page()
    expect(board.page.locator("#message")).to_contain_text("needs its API token")
    expect(board.page.locator("#token-form")).to_be_visible()
    assert board.errors == []  # /info said so: no /v1 request was refused
    board.sign_in("not-the-token")
    expect(board.page.locator("#message")).to_contain_text("Authentication failed")
    expect(board.page.locator("#token-form")).to_be_visible()
    assert board.page.locator("#run-list li").count() == 0
    assert board.page.locator("#run").is_hidden()
    assert board.errors and all("401" in e for e in board.errors), board.errors


def test_with_the_token_every_health_series_is_plotted_over_the_3_rounds(
        signed_in: Dashboard, http: httpx.Client, run: str, tmp_path: Path) -> None:
    page = signed_in.page
    health = http.get(f"/v1/runs/{run}/health").json()
    assert health["rounds"] == [0, 1, 2]
    canvases = page.locator("#charts canvas")
    expect(canvases).to_have_count(len(health["series"]))
    charts = canvases.evaluate_all("""els => els.map(c => {
        const chart = Chart.getChart(c);
        const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
        return {series: c.dataset.series, labels: chart.data.labels,
                data: chart.data.datasets[0].data, points: chart.getDatasetMeta(0).data.length,
                painted};
    })""")
    assert {c["series"] for c in charts} == set(health["series"])
    for chart in charts:
        assert chart["labels"] == ["0", "1", "2"] and chart["points"] == 3, chart
        assert chart["data"] == health["series"][chart["series"]], chart
        assert chart["painted"] > 500, f"{chart['series']}: the canvas is blank"
    alerts = [a for r in http.get(f"/v1/runs/{run}/rounds").json()["rounds"] for a in r["alerts"]]
    expect(page.locator("#alerts li")).to_have_count(len(alerts))
    clusters = http.get(f"/v1/runs/{run}/clusters").json()["clusters"]
    expect(page.locator("#clusters tbody tr")).to_have_count(len(clusters))
    page.screenshot(path=tmp_path / "ui.png")
    if os.environ.get("DCES_UI_SCREENSHOT"):
        page.screenshot(path=os.environ["DCES_UI_SCREENSHOT"])
    assert signed_in.errors == []


@pytest.mark.parametrize("filters", [
    {"selected": "false"}, {"selected": "true"}, {"role": "edge"}, {"reason": "quota_filled"},
    {"cluster": None}, {"cluster": None, "selected": "false"},
])
def test_filters_list_exactly_the_samples_the_api_matches(
        signed_in: Dashboard, http: httpx.Client, run: str, filters: dict[str, str | None]
) -> None:
    page = signed_in.page
    url = f"/v1/runs/{run}/rounds/2"
    everything = http.get(url, params={"limit": PAGE_SIZE}).json()["samples"]
    assert signed_in.sample_ids() == [s["id"] for s in everything]
    if "cluster" in filters:  # the largest cluster: it has kept and rejected samples
        sizes = collections.Counter(s["cluster"] for s in http.get(url).json()["samples"])
        filters["cluster"] = str(sizes.most_common(1)[0][0])
    for name, value in filters.items():
        page.select_option(f"#filters select[name={name}]", value)
    matched = http.get(url, params={**filters, "limit": PAGE_SIZE})
    total = int(matched.headers["X-Total-Count"])
    assert 0 < total < 45, "the filter splits the round"
    expect(page.locator("#sample-count")).to_have_text(
        f"1–{min(total, PAGE_SIZE)} of {total} samples")
    assert signed_in.sample_ids() == [s["id"] for s in matched.json()["samples"]]
    if "cluster" in filters:
        expect(page.locator("#exemplars h4")).to_have_text(
            f"Reference exemplars of cluster {filters['cluster']}")
    assert signed_in.errors == []


def test_a_lost_clusters_reference_exemplars_show_beside_its_candidates(
        signed_in: Dashboard, http: httpx.Client, run: str) -> None:
    page = signed_in.page
    replay = http.get(f"/v1/runs/{run}/rounds/2", params={"limit": 1}).json()["replay"]
    assert replay, "round 2 lost a cluster and replayed reference text of it"
    cluster = replay[0]["cluster"]
    page.select_option("#filters select[name=cluster]", str(cluster))
    expect(page.locator("#exemplars h4")).to_have_text(f"Reference exemplars of cluster {cluster}")
    shown = page.locator("#exemplars li").evaluate_all("els => els.map(e => e.dataset.id)")
    assert shown == [s["id"] for s in replay if s["cluster"] == cluster]
    assert signed_in.errors == []


def test_the_pager_walks_through_the_round(signed_in: Dashboard, http: httpx.Client,
                                           run: str) -> None:
    page = signed_in.page
    second = http.get(f"/v1/runs/{run}/rounds/2", params={"offset": PAGE_SIZE,
                                                          "limit": PAGE_SIZE}).json()["samples"]
    page.click("#next")
    expect(page.locator("#sample-count")).to_have_text(
        f"{PAGE_SIZE + 1}–{PAGE_SIZE + len(second)} of 45 samples")
    assert signed_in.sample_ids() == [s["id"] for s in second]
    page.select_option("#filters select[name=round]", "0")
    expect(page.locator("#sample-count")).to_have_text(f"1–{PAGE_SIZE} of 45 samples")
    assert signed_in.errors == []


def test_edits_are_highlighted_in_the_text(signed_in: Dashboard) -> None:
    """The highlighter on an edited text with a wide character before an edit that changes the
    length (edit offsets are code points of the original, as Python counts them)."""
    marks = signed_in.page.evaluate("""async () => {
        const { highlightEdits } = await import('/ui/static/samples.js');
        const edits = [{start: 2, end: 5, old: 'cat', new: 'tiger', p: 0.97},
                       {start: 17, end: 20, old: 'mat', new: 'rug', p: 0.95}];
        const p = document.createElement('p');
        p.append(...highlightEdits('🐈 tiger sat on the rug', edits));
        return {text: p.textContent,
                marks: [...p.querySelectorAll('mark.edit')].map(m => [m.textContent, m.title])};
    }""")
    assert marks["text"] == "🐈 tiger sat on the rug"
    assert marks["marks"] == [["tiger", "was “cat” (p 0.97)"], ["rug", "was “mat” (p 0.95)"]]


def test_an_alert_is_marked_on_the_series_it_concerns(signed_in: Dashboard) -> None:
    """Whatever the run's own alerts: a coverage alert in round 1 marks round 1 of
    reference_coverage only; a kind that names no series marks every chart."""
    styles = signed_in.page.evaluate("""async () => {
        const { renderCharts } = await import('/ui/static/charts.js');
        const box = document.createElement('div');
        document.body.append(box);
        const health = {rounds: [0, 1], series: {reference_coverage: [1, 0.5],
                                                 effective_clusters: [9, 8]}};
        const alert = (kind) => ({kind, severity: 'critical', cluster: null, message: kind});
        const rounds = [{round: 0, alerts: [alert('something_new')]},
                        {round: 1, alerts: [alert('reference_coverage')]}];
        renderCharts(box, health, rounds);
        const out = {};
        for (const c of box.querySelectorAll('canvas')) {
            out[c.dataset.series] = Chart.getChart(c).getDatasetMeta(0).data
                .map(point => point.options.pointStyle);
        }
        box.remove();
        return out;
    }""")
    assert styles == {"reference_coverage": ["triangle", "triangle"],
                      "effective_clusters": ["triangle", "circle"]}


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280x800", "390x844"])
def test_the_page_fits_the_screen(open_page: Callable[..., Dashboard], run: str,
                                  viewport: ViewportSize) -> None:
    board = open_page(viewport)
    board.sign_in(TOKEN)
    expect(board.page.locator("#samples li").first).to_be_visible()
    width = board.page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page scrolls sideways: {width} px"
    chart = board.page.locator("#charts canvas").first.bounding_box()
    assert chart is not None and chart["x"] >= 0
    assert chart["x"] + chart["width"] <= viewport["width"]
    assert board.errors == []


def test_the_page_and_its_assets_need_no_token_and_no_other_origin(
        server: DCESServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        page = anonymous.get("/ui")
        assert page.status_code == 200 and "script-src 'self'" in \
            page.headers["content-security-policy"]
        for asset in ("/ui/static/main.js", "/ui/static/ui.css",
                      "/ui/static/vendor/chart.umd.min.js"):
            assert anonymous.get(asset).status_code == 200, asset
        assert "://" not in page.text
        assert anonymous.get("/v1/runs").status_code == 401


def test_every_dashboard_file_ships_in_the_wheel() -> None:
    """pyproject's package-data globs (as setuptools expands them, from app/) cover every file
    under app/ui/static, so an installed wheel and the image serve the same page."""
    app = Path(__file__).resolve().parents[2] / "app"
    patterns = tomllib.loads((app.parent / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["app"]
    shipped = {p for pattern in patterns for p in app.glob(pattern) if p.is_file()}
    static = {p for p in (app / "ui" / "static").rglob("*") if p.is_file()}
    assert static and static <= shipped, sorted(str(p) for p in static - shipped)
