"""The Dockerfile's runtime command outside a container, scraped by a real Prometheus on loopback.

Starts the service exactly as the runtime stage does (its CMD and ENV; only
the models folder, port and default model point at freshly built tiny models),
then Debian's `prometheus` with the repo's scrape config and rules (target
rewritten to the loopback port), drives mixed traffic at both models, and
evaluates every PromQL expression of the Grafana dashboard through Prometheus'
HTTP API: each must parse and return data.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from bench.loadgen import drive, mixed_traffic
from bench.server import Server, free_port
from tests import deploy_files as df
from tests.onnx_tiny import make_served

pytestmark = pytest.mark.slow

SENTENCES = [
    "the movie was good",
    "a dog runs in the city",
    "what is the capital of france",
    "the food was terrible",
    "who wrote the book",
    "a man is playing a guitar",
]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    return make_served(tmp_path_factory.mktemp("prometheus-models"))


@pytest.fixture(scope="module")
def service(models_root):
    env = {
        **df.runtime_env(),
        "EMBED_HOST": "127.0.0.1",
        "EMBED_DEFAULT_MODEL": "tiny-fact",
        "EMBED_SHADOW_RATE": "1.0",
        "EMBED_LOG_LEVEL": "warning",
        "EMBED_CANARY": "tiny=tiny-fact:0.3",
    }
    env.pop("EMBED_MODELS_DIR"), env.pop("EMBED_PORT")
    command = df.runtime_command()
    command[0] = sys.executable if command[0] == "python" else command[0]
    with Server(models_root, command=command, **env) as s:
        yield s


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory):
    binary = df.require_binary("prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    config = df.prometheus_config()
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{service.port}"]}]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(df.DEPLOY / "prometheus" / "rules.yml", root / "rules.yml")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def query(prom: str, expr: str) -> dict:
    return httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10).json()


@pytest.fixture(scope="module")
def scraped(service, prometheus, models_root):
    """A reload that re-exports both models (the swap panels), traffic at both models through every
    route (a share of tiny's answered by its canary), then enough scrapes for rate() windows."""
    make_served(models_root)
    report = httpx.post(service.url + "/admin/reload", timeout=60).json()
    assert sorted(report["replaced"]) == ["tiny", "tiny-fact"], report
    make = mixed_traffic(SENTENCES, ["tiny-fact", "tiny"], seed=1)
    result = asyncio.run(drive(service.url, make, concurrency=4, seconds=6))
    assert result.statuses[200] > 50
    for bad in ({"inputs": ""}, {"inputs": "x", "model": "nope"}, {"inputs": "hi " * 9000, "truncate": False}):
        assert httpx.post(service.url + "/embed", json=bad).status_code in (404, 413, 422)
    deadline = time.time() + 30
    while time.time() < deadline:  # wait until a scrape after the traffic has landed
        r = query(prometheus, 'sum(embedding_requests_total{status="404"})')["data"]["result"]
        if r and float(r[0]["value"][1]) >= 1:
            break
        time.sleep(0.5)
    time.sleep(2)
    return prometheus


def test_target_is_up_and_rules_load(scraped):
    targets = httpx.get(scraped + "/api/v1/targets").json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
    groups = httpx.get(scraped + "/api/v1/rules").json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 6 and all(r["health"] == "ok" for r in rules), rules


@pytest.mark.parametrize("title,expr", df.dashboard_exprs())
def test_every_dashboard_expression_returns_data(scraped, title, expr):
    concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$model", ".*")
    answer = query(scraped, concrete)
    assert answer["status"] == "success", f"{title}: {answer}"
    series = answer["data"]["result"]
    assert series, f"{title}: no data for {concrete}"
    models = {s["metric"].get("model") for s in series} - {None}
    if "model" in expr and "by (status)" not in expr:  # per-model panels show compressed beside baseline
        assert {"tiny", "tiny-fact"} & models, f"{title}: {models}"


def test_the_expression_check_can_fail(scraped):
    """Negative control: a metric the service does not export has no data, broken PromQL is an error."""
    assert query(scraped, "embedding_no_such_metric")["data"]["result"] == []
    assert query(scraped, "sum by (model (embedding_requests_total)")["status"] == "error"


def test_the_autoscaling_query_returns_one_number_per_pod(scraped):
    """prometheus-adapter's rule (deploy/k8s/prometheus-adapter/rules.yaml), expanded as the adapter does
    for the HPA's pods metric, evaluated on the service's real series: one value per scraped instance
    (a pod, in a cluster), the models' queues added up."""
    import yaml

    config = yaml.safe_load((df.DEPLOY / "k8s" / "prometheus-adapter" / "rules.yaml").read_text())
    rule = yaml.safe_load(config["data"]["config.yaml"])["rules"][0]
    series = rule["seriesQuery"].split("{")[0]
    expr = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", 'job!=""')
        .replace("<<.GroupBy>>", "instance")
    )
    result = query(scraped, expr)["data"]["result"]
    assert len(result) == 1 and float(result[0]["value"][1]) >= 0, (expr, result)
    assert rule["name"]["as"] == "embedding_queue_depth"
