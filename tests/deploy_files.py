"""Reading the deployment files the way Docker, compose and Prometheus would, for the tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def dockerfile_stages() -> dict[str, list[dict]]:
    """Instructions of each named stage of the Dockerfile."""
    stages: dict[str, list[dict]] = {}
    current: list[dict] = []
    for ins in DockerfileParser(str(REPO / "Dockerfile")).structure:
        if ins["instruction"] == "FROM":
            current = stages.setdefault(ins["value"].split()[-1], [])
        current.append(ins)
    return stages


def instructions(stage: str, kind: str) -> list[str]:
    return [i["value"] for i in dockerfile_stages()[stage] if i["instruction"] == kind]


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def runtime_command() -> list[str]:
    return exec_form(instructions("runtime", "CMD")[-1])


def runtime_env() -> dict[str, str]:
    """ENV of the runtime stage (`ENV A=1 B=2` form), with $PATH references left out."""
    env: dict[str, str] = {}
    for value in instructions("runtime", "ENV"):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            if "$" not in val:
                env[key] = val
    return env


def makefile_serve_command() -> list[str]:
    """The last command of the Makefile's `serve` target, with $(BIN)/ dropped."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("serve:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return shlex.split(re.sub(r"\$\(BIN\)/", "", recipe[-1]))


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def prometheus_config() -> dict:
    return yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "embedding-service.json").read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target and template query of the dashboard."""
    d = dashboard()
    out = [(p["title"], t["expr"]) for p in d["panels"] for t in p["targets"]]
    for var in d["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+), *\w+\)", var["query"]["query"])
        out.append((f"variable {var['name']}", m.group(1) if m else var["query"]["query"]))
    return out


def k8s_documents() -> list[tuple[Path, dict]]:
    return [
        (p, doc)
        for p in sorted((DEPLOY / "k8s" / "base").glob("*.yaml"))
        if p.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(p.read_text())
        if doc
    ]


def require_binary(name: str) -> str:
    """Path of a Debian tool the test needs; skipped where missing, but never in CI (.ci/run installs it
    and sets EMBED_REQUIRE_PROMETHEUS)."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("EMBED_REQUIRE_PROMETHEUS"):
            pytest.fail(f"{name} not found although EMBED_REQUIRE_PROMETHEUS is set")
        pytest.skip(f"{name} not installed (apt-get install prometheus; .ci/run does)")
    return path
