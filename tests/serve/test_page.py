"""The inspector page in a real browser: headless Chromium driven by Playwright.

Each test does what a user does — types a prompt, clicks a token, moves the
temperature slider, starts a generation — and checks what the page shows against
the library's own numbers (the model's attention maps, torch's softmax of its
logits, ``GPT.generate``). The browser is Debian's system Chromium; Playwright
never downloads one. Every request the page makes is watched: one to anywhere
but the server fails the test. A screenshot of each view is saved under pytest's
temporary folder (``TINYLM_SCREENSHOTS=DIR`` saves them there instead: that is
how docs/serve.png is made).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("TINYLM_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, server) -> Iterator:
    """The page, loaded and ready; the test fails if it reached elsewhere or threw."""
    context = browser.new_context(viewport={"width": 1180, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    elsewhere: list[str] = []
    script_errors: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()
    assert elsewhere == [], "the page fetched something from elsewhere"
    assert script_errors == []


@contextlib.contextmanager
def training_view(browser, folder: Path) -> Iterator:
    """The training view of a server over the runs in ``folder``, loaded and ready."""
    from tinylm.serve.api import Api
    from tinylm.serve.served import load_runs

    from .conftest import serving

    with serving(Api(load_runs([folder]))) as srv:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = context.new_page()
            page.goto(srv.url + "#training")
            page.wait_for_selector("body[data-ready=true]")
            yield page
        finally:
            context.close()


def type_prompt(page, text: str) -> None:
    page.fill("#prompt", "")
    page.locator("#prompt").press_sequentially(text)


def model_input(api, run: str, text: str) -> list[int]:
    tok = api.runs[run].tokenizer
    return [tok.bos_id, *tok.encode(text)]


def test_tokens_view_shows_the_runs_tokens_and_a_comparison(page, api, screenshots):
    text = "the lazy dog"
    type_prompt(page, text)
    row = page.locator('.tok-row[data-name="alpha (run)"] .tok')
    row.nth(len(text) - 1).wait_for()
    page.wait_for_function(
        "n => document.querySelectorAll('.tok-row:first-child .tok').length === n", arg=len(text)
    )
    assert [int(i) for i in row.evaluate_all("els => els.map(e => e.dataset.id)")] == (
        api.runs["alpha"].tokenizer.encode(text)
    )
    assert row.all_inner_texts() == list(text)
    page.check('#compare input[data-tokenizer="char"]')
    compared = page.locator('.tok-row[data-name="char"] .tok')
    compared.nth(len(text) - 1).wait_for()
    ids = [int(i) for i in compared.evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == api.tokenizers["char"].encode(text)
    page.locator("body").screenshot(path=screenshots / "tokens.png")


def test_attention_row_of_a_clicked_token_is_the_models_attention(page, api, screenshots):
    text = "quick fox"
    page.click('.tab[data-view="attention"]')
    type_prompt(page, text)
    tokens = page.locator("#attn-tokens .attn-tok")
    page.wait_for_function(
        "n => document.querySelectorAll('#attn-tokens .attn-tok').length === n", arg=len(text) + 1
    )
    model = api.runs["alpha"].loaded.model
    with torch.no_grad():
        maps = model.attention_maps(torch.tensor([model_input(api, "alpha", text)]))

    def shown_row() -> list[float]:
        return [float(w) for w in tokens.evaluate_all("els => els.map(e => e.dataset.weight)")]

    query = 6
    tokens.nth(query).click()
    expected = maps[0][0, 0, query].tolist()  # layer 0, head 0: the page's first choice
    assert shown_row() == pytest.approx(expected, abs=1e-5)
    page.click('#attn-grid canvas[data-layer="1"][data-head="1"]')
    assert shown_row() == pytest.approx(maps[1][0, 1, query].tolist(), abs=1e-5)
    assert page.locator("#layer").input_value() == page.locator("#head").input_value() == "1"
    page.locator("body").screenshot(path=screenshots / "attention.png")

    type_prompt(page, "ZZ")  # not in this tokenizer's vocabulary: the error is shown
    page.wait_for_function("() => document.querySelector('#error').textContent.includes(\"'Z'\")")
    assert page.locator("#error").is_visible()


def test_temperature_slider_reshapes_the_bars_as_the_library_computes(page, api, screenshots):
    text = "the quick"
    type_prompt(page, text)
    page.click('.tab[data-view="next"]')
    page.wait_for_selector('#bars[data-temperature="1"] .bar-row')
    slider = page.locator("#temperature")
    slider.focus()
    for _ in range(10):  # ten steps of 0.05 down: from 1 to 0.5
        page.keyboard.press("ArrowLeft")
    page.wait_for_selector('#bars[data-temperature="0.5"]')
    assert page.inner_text("#temperature-value") == "0.50"
    with torch.no_grad():
        logits = api.runs["alpha"].loaded.model(torch.tensor([model_input(api, "alpha", text)]))[0]
    expected = torch.softmax(logits[0, -1].double() / 0.5, dim=-1)
    bars = page.locator("#bars .bar-row")
    ids = [int(i) for i in bars.evaluate_all("els => els.map(e => e.dataset.id)")]
    probs = [float(p) for p in bars.evaluate_all("els => els.map(e => e.dataset.prob)")]
    top = torch.topk(expected, len(ids))
    assert ids == top.indices.tolist()
    assert probs == pytest.approx(top.values.tolist(), abs=1e-6)
    page.locator("body").screenshot(path=screenshots / "next-token.png")

    first = bars.first.get_attribute("data-text")
    bars.first.locator(".bar-track").click()  # appends the token to the prompt
    page.wait_for_function(
        "text => document.querySelector('#prompt').value === text", arg=text + first
    )


def test_generation_streams_the_tokens_generate_samples(page, api, screenshots):
    type_prompt(page, "the")
    page.click('.tab[data-view="generate"]')
    page.fill("#gen-max", "20")
    page.fill("#gen-temperature", "0.9")
    page.fill("#gen-seed", "5")
    page.click("#gen-start")
    page.wait_for_selector("#gen-status[data-done=true]")
    shown = page.locator("#gen-output .gen-tok")
    ids = [int(i) for i in shown.evaluate_all("els => els.map(e => e.dataset.id)")]
    model = api.runs["alpha"].loaded.model
    sampled = list(model.generate(model_input(api, "alpha", "the"), 20, temperature=0.9, seed=5))
    bos = api.runs["alpha"].tokenizer.bos_id
    if sampled and sampled[0] == bos:
        sampled = sampled[1:]  # kept as context, not shown
    expected = sampled[: sampled.index(bos)] if bos in sampled else sampled
    assert ids == expected and ids
    colours = shown.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) > 1  # coloured by probability, not all alike
    assert page.locator("#gen-start").is_enabled() and page.locator("#gen-stop").is_disabled()
    page.locator("body").screenshot(path=screenshots / "generate.png")


def test_training_view_draws_both_runs_curves_and_compares_their_configs(page, screenshots):
    page.click('.tab[data-view="training"]')
    page.wait_for_selector("#loss-chart polyline.val-curve >> nth=1")
    curves = page.locator("#loss-chart polyline.train-curve")
    assert curves.evaluate_all("els => els.map(e => e.dataset.run)") == ["alpha", "beta"]
    differs = page.locator("#config-table tr.differs").evaluate_all(
        "els => els.map(e => e.dataset.key)"
    )
    assert {"model.n_layer", "model.position", "train.lr", "step"} <= set(differs)
    assert "model.n_head" not in differs
    page.uncheck('#train-runs input[data-run="beta"]')
    page.wait_for_function(
        "() => document.querySelectorAll('#loss-chart polyline.train-curve').length === 1"
    )
    page.check('#train-runs input[data-run="beta"]')
    page.wait_for_selector("#loss-chart polyline.val-curve >> nth=1")
    page.locator("body").screenshot(path=screenshots / "training.png")


def test_an_error_clears_the_views_that_showed_the_previous_prompt(page):
    page.click('.tab[data-view="attention"]')
    type_prompt(page, "quick fox")
    page.wait_for_selector("#heatmap[data-tokens='10']")
    page.wait_for_selector("#attn-grid canvas")
    type_prompt(page, "ZZ")  # not in the vocabulary: no map belongs to this prompt
    page.wait_for_function("() => document.querySelector('#error').textContent.includes(\"'Z'\")")
    assert page.locator("#attn-tokens .attn-tok").count() == 0
    assert page.locator("#attn-grid canvas").count() == 0
    assert page.get_attribute("#heatmap", "data-tokens") is None

    page.click('.tab[data-view="next"]')
    type_prompt(page, "the quick")
    page.wait_for_selector("#error", state="hidden")
    page.wait_for_selector("#bars .bar-row")
    type_prompt(page, "the quick brown fox jumps over the lazy dog, the lazy dog")  # > 48 tokens
    page.wait_for_function(
        "() => document.querySelector('#error').textContent.includes('block_size of 48')"
    )
    assert page.locator("#bars .bar-row").count() == 0
    assert page.inner_text("#bars-rest") == ""


def test_changing_the_run_never_shows_the_old_runs_map_under_the_new_name(page):
    page.click('.tab[data-view="attention"]')
    type_prompt(page, "fox")
    page.wait_for_selector('#attn-grid canvas[data-layer="1"]')  # alpha: 2 layers
    page.route("**/api/attention", lambda route: route.abort())  # beta's answer never comes
    page.select_option("#run", "beta")
    page.wait_for_selector("#error", state="visible")
    assert page.locator("#attn-grid canvas").count() == 0
    assert page.locator("#attn-tokens .attn-tok").count() == 0


def test_the_first_prompt_is_the_runs_own_and_the_heatmap_names_its_axes(page, api):
    # These runs have no prepared data at hand: the prompt starts empty, not with text
    # another corpus suggests.
    assert page.input_value("#prompt") == api.runs["alpha"].default_prompt == ""
    page.click('.tab[data-view="attention"]')
    assert "attended to" in page.inner_text("#heatmap-x") and page.is_visible("#heatmap-x")
    assert "attending" in page.inner_text("#heatmap-y") and page.is_visible("#heatmap-y")


def test_the_pages_own_posts_pass_the_origin_and_content_type_checks(page, server):
    status = page.evaluate(
        """async () => (await fetch('/api/tokenize', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({run: 'alpha', text: 'the'})})).status"""
    )
    assert status == 200
    # A form another site could post (text/plain, no preflight) is refused.
    status = page.evaluate(
        """async () => (await fetch('/api/tokenize', {method: 'POST',
             headers: {'Content-Type': 'text/plain'},
             body: JSON.stringify({run: 'alpha', text: 'the'})})).status"""
    )
    assert status == 415


def test_losses_per_character_and_per_token_get_separate_charts(browser, tmp_path):
    from tinylm.tokenizers.bpe import BPETokenizer

    from .conftest import TEXT, make_run

    make_run(tmp_path / "chars", n_layer=1, seed=0, losses=[3.0, 2.5, 2.0, 1.8])
    bpe = BPETokenizer.train(TEXT * 4, vocab_size=300, progress=False)
    make_run(tmp_path / "tokens", n_layer=1, seed=1, losses=[6.0, 5.0, 4.5, 4.2], tokenizer=bpe)
    with training_view(browser, tmp_path) as page:
        page.wait_for_selector("#loss-chart svg.loss-chart >> nth=1")
        charts = page.locator("#loss-chart svg.loss-chart")
        assert charts.count() == 2
        titles = [t.strip() for t in charts.locator("text.chart-title").all_text_contents()]
        assert titles[0] == "loss per character (nats)"
        assert titles[1].startswith("loss per token of BPETokenizer (")
        runs = [c.locator("polyline.train-curve").get_attribute("data-run") for c in charts.all()]
        assert runs == ["chars", "tokens"]


def test_bits_per_byte_share_one_chart_across_tokenizers(browser, tmp_path):
    from tinylm.tokenizers.bpe import BPETokenizer

    from .conftest import TEXT, make_run

    make_run(tmp_path / "chars", n_layer=1, seed=0, losses=[3.0, 2.5])
    bpe = BPETokenizer.train(TEXT * 4, vocab_size=300, progress=False)
    make_run(tmp_path / "tokens", n_layer=1, seed=1, losses=[6.0, 5.0], tokenizer=bpe)
    for name, bpb in (("chars", 3.5), ("tokens", 3.1)):  # each falls by 0.2
        with (tmp_path / name / "metrics.jsonl").open("a", encoding="utf-8") as f:
            for step, value in ((30, bpb), (40, bpb - 0.2)):
                f.write(f'\n{{"step": {step}, "val_loss": 2, "val_ppl": 7, "val_bpb": {value}}}')
    with training_view(browser, tmp_path) as page:
        page.wait_for_selector("#loss-chart svg.bpb-chart polyline.val-curve >> nth=1")
        chart = page.locator("#loss-chart svg.bpb-chart")
        assert chart.count() == 1  # beside the two charts in nats, one per unit
        assert page.locator("#loss-chart svg.loss-chart").count() == 3
        title = chart.locator("text.chart-title").text_content().strip()
        assert title.startswith("validation bits per byte")
        runs = [c.get_attribute("data-run") for c in chart.locator("polyline.val-curve").all()]
        assert runs == ["chars", "tokens"]
