"""The playground page in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver, against a real server on loopback. The test reads the models table, fills the
form, checks every cosine the page shows against /embed, waits for live latency figures, and saves
a screenshot under the test's temporary directory.

Skipped where Chromium is not installed, except when EMBED_REQUIRE_BROWSER=1 (CI installs it)."""

from __future__ import annotations

import os
import shutil

import httpx
import numpy as np
import pytest

from bench.server import Server

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TEXTS = ["the movie was good", "a dog runs in the city", "where is the river"]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("EMBED_REQUIRE_BROWSER") == "1":
            pytest.fail("EMBED_REQUIRE_BROWSER=1 but chromium / chromedriver are not installed")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # headless as root on a closed network: no sandbox, and none of Chromium's own background traffic
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1400,1200",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(served_models):
    with Server(served_models, EMBED_DEFAULT_MODEL="tiny-fact", EMBED_LOG_LEVEL="warning") as s:
        yield s


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def test_the_page_shows_the_models_and_compares_them_on_the_users_texts(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    assert "Compressed text embeddings" in browser.title
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-model]") or None)
    shown = {r.get_attribute("data-model"): r for r in rows}
    models = httpx.get(server.url + "/models").json()["models"]
    assert set(shown) == set(models) == {"tiny", "tiny-fact"}
    fact = shown["tiny-fact"]

    def cell_of(attr):
        return fact.find_element(By.CSS_SELECTOR, f"td[data-{attr}]")

    assert cell_of("version").text == models["tiny-fact"]["version"]
    ratio = float(cell_of("ratio").get_attribute("data-ratio"))
    assert ratio == pytest.approx(models["tiny"]["bytes"]["file"] / models["tiny-fact"]["bytes"]["file"])
    assert float(cell_of("host-mean").get_attribute("data-host-mean")) == pytest.approx(
        models["tiny-fact"]["host_fidelity"]["mean"]
    )
    # What a person compares (size, ratio, fidelity here and offline) is on screen at 1280 px; the recipe
    # string comes last, whole in its tooltip.
    browser.set_window_size(1280, 1000)
    width = browser.execute_script("return document.documentElement.clientWidth")
    for attr in ("ratio", "fidelity-mean", "host-mean"):
        rect = cell_of(attr).rect
        assert rect["x"] + rect["width"] <= width, (attr, rect, width)
    assert cell_of("quantization").get_attribute("title") == models["tiny-fact"]["quantization"]

    box = browser.find_element(By.ID, "texts")
    box.clear()
    box.send_keys("\n".join(TEXTS))
    browser.find_element(By.ID, "run").click()
    _wait(browser, lambda d: d.find_element(By.ID, "results").get_attribute("data-state") == "done")

    for name in ("tiny", "tiny-fact"):
        card = browser.find_element(By.ID, f"result-{name}")
        vectors = np.asarray(
            httpx.post(server.url + "/embed", json={"inputs": TEXTS, "model": name}).json()["embeddings"]
        )
        expected = vectors @ vectors.T
        cells = card.find_elements(By.CSS_SELECTOR, "td[data-value]")
        assert len(cells) == len(TEXTS) ** 2
        for c in cells:
            i, j = int(c.get_attribute("data-i")), int(c.get_attribute("data-j"))
            assert float(c.get_attribute("data-value")) == pytest.approx(expected[i, j], abs=1e-5)
            assert c.text == f"{expected[i, j]:.3f}"
        assert float(card.find_element(By.CLASS_NAME, "latency").get_attribute("data-ms")) > 0
    # the compressed model's card says how far its matrix moved from its baseline's
    diff = float(browser.find_element(By.CSS_SELECTOR, "#result-tiny-fact .diff").get_attribute("data-value"))
    assert 0 < diff < 0.5

    # the page's own requests are live traffic: its latency table fills from /metrics
    live = _wait(
        browser,
        lambda d: [
            r
            for r in d.find_elements(By.CSS_SELECTOR, "#live tbody tr[data-model]")
            if r.find_elements(By.CSS_SELECTOR, "td[data-p99]")
        ]
        or None,
    )
    p50 = float(live[0].find_element(By.CSS_SELECTOR, "td[data-p50]").get_attribute("data-p50"))
    p99 = float(live[0].find_element(By.CSS_SELECTOR, "td[data-p99]").get_attribute("data-p99"))
    assert 0 < p50 <= p99 < 10
    shot = tmp_path / "playground.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_the_page_reports_a_missing_api_key(browser, served_models):
    from selenium.webdriver.common.by import By

    with Server(served_models, EMBED_DEFAULT_MODEL="tiny-fact", EMBED_API_KEY="k", EMBED_LOG_LEVEL="warning") as s:
        browser.get(s.url + "/")
        error = _wait(
            browser,
            lambda d: d.find_element(By.ID, "models-error").is_displayed() and d.find_element(By.ID, "models-error"),
        )
        assert "API key" in error.text
        key = browser.find_element(By.ID, "api-key")
        key.send_keys("k")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-model]") or None)
        assert not browser.find_element(By.ID, "models-error").is_displayed()


def _bits(v: np.ndarray) -> np.ndarray:
    return np.unpackbits(v.astype(np.int64).astype(np.uint8)[:, None], axis=1).ravel() * 2.0 - 1


def test_the_form_asks_for_compact_vectors_dimensions_and_windows(browser, server):
    """Each option reaches /embed: the matrices the page shows are the similarities a store computes on
    what /embed returns with the same fields, and the card says which vector it got."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/")
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#models tbody tr[data-model]") or None)
    models = httpx.get(server.url + "/models").json()["models"]
    for row in rows:  # the compact types' cost and the supported sizes are in the models table
        m = models[row.get_attribute("data-model")]
        types = row.find_element(By.CSS_SELECTOR, "td[data-embedding-types]")
        assert types.get_attribute("data-embedding-types").split(",") == list(m["embedding_types"])
        assert row.find_element(By.CSS_SELECTOR, "td[data-dimensions]").text == ", ".join(map(str, m["dimensions"]))
    long_text = " ".join(["the dog plays music in the city"] * 12)  # over the tiny models' 48 tokens
    box = browser.find_element(By.ID, "texts")
    box.clear()
    box.send_keys("\n".join([*TEXTS, long_text]))
    texts = [*TEXTS, long_text]
    cases = [
        ({"embedding_type": "int8"}, "int8", "", False),
        ({"embedding_type": "binary"}, "binary", "", False),
        ({"embedding_type": "float", "dimensions": 32}, "float", "32", False),
        ({"embedding_type": "uint8", "truncate": False, "return_windows": True}, "uint8", "", True),
    ]
    for fields, kind, dims, windowed in cases:
        Select(browser.find_element(By.ID, "embedding-type")).select_by_value(kind)
        Select(browser.find_element(By.ID, "dimensions")).select_by_value(dims)
        if browser.find_element(By.ID, "windows").is_selected() != windowed:
            browser.find_element(By.ID, "windows").click()
        browser.find_element(By.ID, "run").click()
        _wait(browser, lambda d: d.find_element(By.ID, "results").get_attribute("data-state") == "done")
        card = browser.find_element(By.ID, "result-tiny-fact")
        body = httpx.post(server.url + "/embed", json={"inputs": texts, "model": "tiny-fact", **fields}).json()
        v = np.asarray(body["embeddings"], dtype=np.float64)
        if kind.endswith("binary"):
            b = np.stack([_bits(x) for x in v])
            expected = b @ b.T / b.shape[1]
        else:
            u = v / np.linalg.norm(v, axis=1, keepdims=True)
            expected = u @ u.T
        vector = card.find_element(By.CLASS_NAME, "vector")
        assert vector.get_attribute("data-type") == kind and int(vector.get_attribute("data-width")) == v.shape[1]
        for c in card.find_elements(By.CSS_SELECTOR, "td[data-value]"):
            i, j = int(c.get_attribute("data-i")), int(c.get_attribute("data-j"))
            assert float(c.get_attribute("data-value")) == pytest.approx(expected[i, j], abs=1e-5), fields
        shown = card.find_elements(By.CLASS_NAME, "windows")
        if windowed:
            counts = [int(n) for n in shown[0].get_attribute("data-counts").split(",")]
            assert counts == [len(w) for w in body["windows"]] and counts[-1] > 1 and counts[0] == 1
        else:
            assert not shown
