"""The Dockerfile, compose file, Prometheus, Grafana and Kubernetes files agree with each other and with the code.

No Docker engine runs here, so these parse the files and check what a
`docker compose up` relies on; the real-Prometheus test lives in
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib

import kubernetes_validate
import pytest
import yaml

from service.settings import Settings
from tests import deploy_files as df

REPO, DEPLOY = df.REPO, df.DEPLOY
SHARED = REPO.parent / "shared"
SETTINGS_ENV = {f"EMBED_{name.upper()}" for name in Settings.model_fields}


def test_dockerfile_stages_copy_only_what_exists_and_is_not_ignored():
    stages = df.dockerfile_stages()
    assert {"build", "runtime", "loadgen"} <= set(stages)
    keep = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for stage, ins in stages.items():
        for i in ins:
            if i["instruction"] != "COPY":
                continue
            words = i["value"].split()
            flags = [w for w in words if w.startswith("--")]
            *sources, _dest = [w for w in words if not w.startswith("--")]
            if "--from=build" in flags:
                continue
            root = SHARED if "--from=shared" in flags else REPO
            for src in sources:
                assert (root / src).exists(), f"{stage}: COPY {src} does not exist"
                if root is REPO:  # the build context must not filter it out
                    assert any(fnmatch.fnmatch(src, p) or fnmatch.fnmatch(src + "/x", p) for p in keep), src


def test_runtime_stage_is_slim_non_root_and_runs_the_readme_serve_command():
    assert df.runtime_command() == df.makefile_serve_command() == ["python", "-m", "service"]
    runtime = df.dockerfile_stages()["runtime"]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = " ".join(i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK")
    assert "/healthz" in health
    # Only the service's extra is installed, and that extra has no torch.
    runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert "'.[service]'" in runs and "pipeline" not in runs and "torch" not in runs
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(dep.startswith("torch") for dep in extras["service"])
    env = df.runtime_env()
    assert set(k for k in env if k.startswith("EMBED_")) <= SETTINGS_ENV and env["EMBED_HOST"] == "0.0.0.0"
    # the build stage takes torch from the CPU index (no CUDA download), exactly the pinned version
    build_runs = " ".join(df.instructions("build", "RUN"))
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in build_runs and "make models" in build_runs


def test_compose_services_mounts_ports_and_env_agree():
    c = df.compose()
    services = c["services"]
    assert {"api", "prometheus", "grafana", "loadgen"} <= set(services)
    assert services["loadgen"]["profiles"] == ["loadgen"]
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            assert (REPO / host).exists(), f"{name} mounts missing {host}"
        build = svc.get("build")
        if build:
            assert (REPO / build["context"]).is_dir()
            assert build["target"] in df.dockerfile_stages()
            for path in build.get("additional_contexts", {}).values():
                assert (REPO / path).is_dir(), path
    api = services["api"]
    assert set(api["environment"]) <= SETTINGS_ENV, set(api["environment"]) - SETTINGS_ENV
    port = int(api["environment"]["EMBED_PORT"])
    assert any(p.split(":")[-1] == str(port) for p in api["ports"])
    assert "/healthz" in " ".join(api["healthcheck"]["test"]) and api["restart"]
    assert api["deploy"]["resources"]["limits"]["memory"]
    # Prometheus scrapes the api service by its compose name and port, and loads the mounted rules.
    prom = df.prometheus_config()
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"api:{port}"]
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert {f"/etc/prometheus/{f}" for f in prom["rule_files"]} <= mounted
    # Grafana: the provisioned datasource points at the prometheus service; dashboards path is mounted.
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and any(p.startswith("9090") for p in services["prometheus"]["ports"])
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    gmounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    dash_dir = gmounts[prov["providers"][0]["options"]["path"]]
    assert (REPO / dash_dir / "embedding-service.json").is_file()
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    # every panel queries the provisioned datasource
    assert all(p["datasource"]["uid"] == ds["uid"] for p in df.dashboard()["panels"])


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_where_the_plugin_exists():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("docker client has no compose plugin")
    r = subprocess.run(["docker", "compose", "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dashboard_json_is_the_generator_output(tmp_path):
    sys.path.insert(0, str(DEPLOY / "grafana"))
    try:
        import dashboard as generator
    finally:
        sys.path.pop(0)
    assert generator.dashboard() == df.dashboard(), "run: python deploy/grafana/dashboard.py"
    titles = " ".join(p["title"] for p in df.dashboard()["panels"]).lower()
    for needed in (
        "latency",
        "queue",
        "inference",
        "batch",
        "error",
        "memory",
        "parameters",
        "ratio",
        "fidelity",
        "label mix",
    ):
        assert needed in titles
    assert df.dashboard()["templating"]["list"][0]["name"] == "model"


def test_kubernetes_manifests_validate_and_match_the_image():
    docs = df.k8s_documents()
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    for _, doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)  # raises on any schema error
    by_kind = {d["kind"]: d for _, d in docs}
    assert set(by_kind["ConfigMap"]["data"]) <= SETTINGS_ENV
    pod = by_kind["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == df.runtime_command()
    assert container["image"] == df.compose()["services"]["api"]["image"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_validator_rejects_a_broken_manifest():
    _, deployment = next((p, d) for p, d in df.k8s_documents() if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.37.0", strict=True)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["check", "rules", "deploy/prometheus/rules.yml"],
        ["test", "rules", "deploy/prometheus/tests/rules_test.yml"],
    ],
)
def test_promtool(args):
    r = subprocess.run([df.require_binary("promtool"), *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rule_tests_can_fail(tmp_path):
    """The rule tests are not vacuous: a wrong expected alert makes promtool fail."""
    tests = yaml.safe_load((DEPLOY / "prometheus/tests/rules_test.yml").read_text())
    tests["rule_files"] = [str(DEPLOY / "prometheus/rules.yml")]
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["model"] = "fast"
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests))
    r = subprocess.run(
        [df.require_binary("promtool"), "test", "rules", str(tmp_path / "t.yml")], capture_output=True, text=True
    )
    assert r.returncode != 0


def test_deployment_page_describes_every_dashboard_panel():
    readme = (REPO / "docs" / "deployment.md").read_text()
    for panel in df.dashboard()["panels"]:
        title = panel["title"].split(" (")[0]
        assert f"**{title}" in readme, title


def test_autoscaling_on_the_queue_and_models_from_a_volume():
    import yaml

    by_kind = {d["kind"]: d for _, d in df.k8s_documents()}
    hpa = by_kind["HorizontalPodAutoscaler"]
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods and pods[0]["pods"]["metric"]["name"] == "embedding_queue_depth"
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
    adapter = yaml.safe_load((df.DEPLOY / "k8s" / "prometheus-adapter" / "rules.yaml").read_text())
    kubernetes_validate.validate(adapter, "1.37.0", strict=True)
    rule = yaml.safe_load(adapter["data"]["config.yaml"])["rules"][0]
    assert rule["name"]["as"] == pods[0]["pods"]["metric"]["name"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"} and "<<.GroupBy>>" in rule["metricsQuery"]
    overlay = df.DEPLOY / "k8s" / "overlays" / "models-volume"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    pvc = yaml.safe_load((overlay / "pvc.yaml").read_text())
    kubernetes_validate.validate(pvc, "1.37.0", strict=True)
    patch = yaml.safe_load((overlay / "deployment-patch.yaml").read_text())
    config = yaml.safe_load((overlay / "configmap-patch.yaml").read_text())
    assert {p["path"] for p in kustomization["patches"]} == {"deployment-patch.yaml", "configmap-patch.yaml"}
    spec = patch["spec"]["template"]["spec"]
    mount = spec["containers"][0]["volumeMounts"][0]
    assert spec["containers"][0]["name"] == by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["name"]
    assert mount["readOnly"] and mount["mountPath"] == config["data"]["EMBED_MODELS_DIR"]
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert set(config["data"]) <= SETTINGS_ENV and float(config["data"]["EMBED_RELOAD_POLL_S"]) > 0


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
@pytest.mark.parametrize("root", ["k8s", "k8s/overlays/models-volume"])
def test_kustomize_renders_each_root_into_valid_manifests(root):
    """What `kubectl apply -k deploy/<root>` would send, rendered offline by kubectl's own kustomize and
    validated against the Kubernetes 1.37 schemas (an overlay that loops back into its base fails here)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    if root.endswith("models-volume"):
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert "PersistentVolumeClaim" in kinds and any("persistentVolumeClaim" in v for v in volumes)
