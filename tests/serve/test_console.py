"""The console at /ui in a real browser (headless Chromium driven by Playwright): a streamed chat with its expert,
the cost slider changing the chosen expert, a thumbs up counted in the learner status the page shows, and the
learner's 501 shown rather than a blank panel. Screenshots land in $ROUTERLLM_TEST_ARTIFACTS (default
runs/test-artifacts/, gitignored)."""

import copy
import os
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import REPO_ROOT, AppConfig
from tests.serve.conftest import TEST_GRAPH, learner_section, stop_actors

pytestmark = pytest.mark.serve

CHROMIUM = "/usr/bin/chromium"
# Chromium as CI runs it: no sandbox (root in a container), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = (
    "the console test needs headless Chromium at /usr/bin/chromium and Playwright for Python: "
    "`apt-get update && apt-get install -y chromium` and `pip install -e '.[dev]'` (.ci/run does both)"
)
NAMESPACE = "routerllm-test-console"
PREFIX = "/console"  # under a route prefix, so the page's relative URLs are tested too
PROMPT = "What is the capital of France?"
# moe's utility is w_quality * (q + prior_weight * prior) - w_cost * cost_norm. With these priors gpu_llm leads by
# at least 2 * 0.8 - 1 = 0.6 at cost weight 0 whatever the untrained gate predicts (q is a sigmoid, in (0, 1)); at
# cost weight 5 smol leads, since gpu_llm's cost_norm is 1 and smol's 0.075, a gap of 4.6 > 2.6.
MOE = {"hidden": [16], "seed": 0, "quality_prior_weight": 2.0}
QUALITY_PRIORS = {"smol": 0.1, "gpu_llm": 0.9}
PARAMS_B = {"smol": 0.135, "gpu_llm": 70}  # gpu_llm is the largest: the savings panel compares against it


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ROUTERLLM_TEST_ARTIFACTS", REPO_ROOT / "runs" / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def console_graph(tmp: Path) -> dict:
    graph = copy.deepcopy(TEST_GRAPH)
    graph["experts"] = graph["experts"][:2]  # smol + fake-engine vLLM: both answer
    for expert in graph["experts"]:
        expert["quality_prior"] = QUALITY_PRIORS[expert["name"]]
        expert["params_b"] = PARAMS_B[expert["name"]]
    graph["router"] = {
        "strategies": {"dummy": {"seed": 0}, "moe": MOE, "rl": {"hidden": [16, 16]}},
        "default_strategy": "moe",
        "num_cpus": 0.1,
    }
    # moe explores by default now; the page's checks need a deterministic moe.
    strategies = {
        "moe": {"config": MOE, "epsilon_start": 0.0, "epsilon_end": 0.0},
        "rl": {"config": {"hidden": [16, 16]}},
    }
    graph["learner"] = learner_section(tmp, NAMESPACE, strategies)
    return graph


@pytest.fixture(scope="module")
def console_url(ray_session, tmp_path_factory):
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(console_graph(tmp_path_factory.mktemp("console")))))
    serve.run(build_app(config), name="routerllm-console", route_prefix=PREFIX)
    yield ray_session + PREFIX
    serve.delete("routerllm-console")
    stop_actors(NAMESPACE)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; a machine without it fails here with what to install (never a skip)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(f"{INSTALL_HINT} ({e})")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as e:  # noqa: BLE001 - any launch failure means the same missing install
            pytest.fail(f"{INSTALL_HINT} ({type(e).__name__}: {str(e)[:300]})")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_console(page, url: str) -> None:
    page.goto(url + "/ui")
    page.wait_for_selector("#send:not([disabled])", timeout=30_000)


def ask(page, prompt: str, answers_before: int) -> None:
    """Send a prompt and wait until its answer and routing metadata are shown."""
    page.fill("#prompt", prompt)
    page.click("#send")
    page.wait_for_function(
        "n => document.querySelectorAll('.answer.done, .answer.failed').length > n", arg=answers_before, timeout=120_000
    )
    newest = page.locator(".answer").first
    assert "failed" not in newest.get_attribute("class"), newest.inner_text()


def test_console_files_and_router_summary(console_url):
    page = httpx.get(console_url + "/ui", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="ui/main.js"' in page.text
    script = httpx.get(console_url + "/ui/main.js", timeout=30)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    missing = httpx.get(console_url + "/ui/secrets.txt", timeout=30)
    assert missing.status_code == 404 and "no console file" in missing.json()["error"]["message"]
    summary = httpx.get(console_url + "/v1/router", timeout=30).json()
    assert summary["strategies"] == ["dummy", "moe", "rl"] and summary["default_strategy"] == "moe"
    assert summary["learned_online"] == ["moe", "rl"] and summary["default_weights"]["quality"] == 1.0


def test_chat_cost_slider_and_feedback(page, console_url):
    shots = artifacts_dir()
    open_console(page, console_url)
    assert page.locator("#strategy").input_value() == "moe"
    assert sorted(page.locator("#strategy option").evaluate_all("os => os.map(o => o.value)")) == ["dummy", "moe", "rl"]
    page.screenshot(path=str(shots / "console-idle.png"))

    ask(page, PROMPT, 0)
    first = page.locator(".answer").first
    assert first.locator(".reply").inner_text().strip(), "the streamed answer is empty"
    assert first.locator(".expert").inner_text().strip() == "gpu_llm"  # quality decides at cost weight 0
    assert first.locator(".policy-version").inner_text().strip() != ""

    page.fill("#weight-cost", "5")
    assert page.locator("#weight-cost-value").inner_text() == "5.00"
    ask(page, PROMPT, 1)
    second = page.locator(".answer").first
    assert second.locator(".expert").inner_text().strip() == "smol"  # the cheapest expert at a large cost weight

    second.locator(".thumb-up").click()
    page.wait_for_selector(".answer >> nth=0 >> .feedback-status.ok", timeout=30_000)
    assert re.match(r"score 1(\.0+)? recorded", second.locator(".feedback-status").inner_text())
    # The learner status the page polls counts the feedback.
    page.wait_for_function("() => document.getElementById('feedback-count')?.textContent === '1'", timeout=30_000)
    # That feedback is enough for this learner (publish after every update): moe's live version moves past the one
    # that answered, on the learner panel and then on the next answer, which the new version routes.
    answered = int(second.locator(".policy-version").inner_text().strip())
    live = "() => Number(document.querySelector('tr[data-strategy=moe] .live-version')?.textContent) > " + str(answered)
    page.wait_for_function(live, timeout=60_000)
    newer = int(page.locator("tr[data-strategy=moe] .live-version").inner_text())
    deadline = time.time() + 30
    while True:
        ask(page, PROMPT, page.locator(".answer").count())
        if int(page.locator(".answer").first.locator(".policy-version").inner_text().strip()) >= newer:
            break
        assert time.time() < deadline, "the new policy version never reached the router replica"
    assert page.locator("#errors").is_hidden()
    assert "all to gpu_llm" in page.locator("#savings").inner_text()
    page.screenshot(path=str(shots / "console-chats.png"), full_page=True)


def test_learner_error_is_shown_not_blank(page, console_url):
    body = {"error": {"message": "online learning is not enabled in this deployment", "code": "learner_disabled"}}
    page.route("**/v1/learner/status", lambda route: route.fulfill(status=501, json=body))
    open_console(page, console_url)
    page.wait_for_selector("#learner .error", timeout=30_000)
    assert "501" in page.locator("#learner .error").inner_text()
    # Every other panel still draws.
    assert page.locator("#shares svg").count() == 1
    page.screenshot(path=str(artifacts_dir() / "console-learner-disabled.png"))
