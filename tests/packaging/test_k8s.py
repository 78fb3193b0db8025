"""deploy/k8s/: every manifest validates against the Kubernetes schemas (kubernetes-validate, pinned in the dev
extra, ships them: no network), and the manifests agree with the service: probes on real routes, settings that
exist, a grace period longer than the graceful shutdown, selectors that select the pods."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.app import create_app
from service.config import Settings

from .dockerfile import REPO, parse

K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes still commonly run, and the newest the validator knows.
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def api_container() -> dict[str, Any]:
    containers = one("Deployment", "cellstate-api")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "api")


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    docs = documents()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")


def test_the_validator_catches_a_misspelt_field() -> None:
    """The schemas are really applied (offline): a typo in a probe's name is refused."""
    broken = copy.deepcopy(one("Deployment", "cellstate-api"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_probes_point_at_real_routes_on_the_served_port(tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=tmp_path))
    get_routes = {path for path, operations in app.openapi()["paths"].items() if "get" in operations}
    container = api_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in get_routes
        assert container[probe]["httpGet"]["port"] == "http"
    config = one("ConfigMap", "cellstate-config")["data"]
    (port,) = [p for p in container["ports"] if p["name"] == "http"]
    assert port["containerPort"] == int(config["CELLSTATE_PORT"])
    assert config["CELLSTATE_HOST"] == "0.0.0.0"
    service = one("Service", "cellstate-api")["spec"]
    assert service["ports"][0]["targetPort"] == "http"


def test_every_setting_named_is_a_real_one() -> None:
    fields = {f"CELLSTATE_{name.upper()}" for name in Settings.model_fields}
    named = set(one("ConfigMap", "cellstate-config")["data"]) | set(one("Secret", "cellstate-keys")["stringData"])
    named |= {env["name"] for env in api_container().get("env", [])}
    assert named - fields == set(), "not settings of service/config.py"
    # Every value parses as the setting's type.
    values = {k.removeprefix("CELLSTATE_").lower(): v for k, v in one("ConfigMap", "cellstate-config")["data"].items()}
    Settings.model_validate(values)
    refs = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in api_container()["envFrom"]}
    assert refs == {"cellstate-config", "cellstate-keys"}


def test_the_grace_period_covers_the_pre_stop_pause_and_the_graceful_shutdown() -> None:
    pod = one("Deployment", "cellstate-api")["spec"]["template"]["spec"]
    graceful = int(one("ConfigMap", "cellstate-config")["data"]["CELLSTATE_GRACEFUL_SHUTDOWN_SECONDS"])
    command = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(command[-1].rsplit("sleep(", 1)[1].rstrip(")"))
    assert pod["terminationGracePeriodSeconds"] >= pause + graceful + 3


def test_selectors_select_the_pods_and_the_autoscaler_scales_the_deployment() -> None:
    deployment = one("Deployment", "cellstate-api")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service", "cellstate-api")["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget", "cellstate-api")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one("HorizontalPodAutoscaler", "cellstate-api")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cellstate-api"}
    assert hpa["minReplicas"] >= 2 > one("PodDisruptionBudget", "cellstate-api")["spec"]["minAvailable"]
    redis = one("Deployment", "cellstate-redis")["spec"]["template"]["metadata"]["labels"]
    assert one("Service", "cellstate-redis")["spec"]["selector"].items() <= redis.items()


def test_the_api_reaches_redis_through_its_service() -> None:
    config = one("ConfigMap", "cellstate-config")["data"]
    assert config["CELLSTATE_SESSION_STORE"] == "redis"
    host_port = config["CELLSTATE_REDIS_URL"].removeprefix("redis://").split("/", 1)[0]
    host, port = host_port.split(":")
    redis_service = one("Service", "cellstate-redis")
    assert host == redis_service["metadata"]["name"] and int(port) == redis_service["spec"]["ports"][0]["port"]


def test_resources_are_set_and_threads_match_the_cpu_limit() -> None:
    resources = api_container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    threads = int(one("ConfigMap", "cellstate-config")["data"]["CELLSTATE_INTRA_OP_THREADS"])
    assert threads == int(resources["limits"]["cpu"])

    def mebibytes(quantity: str) -> float:
        units = {"Mi": 1, "Gi": 1024}
        return float(quantity[:-2]) * units[quantity[-2:]]

    # BENCHMARKS.md (overload): the peak resident memory under a flood must fit the request with room to spare.
    assert mebibytes(resources["requests"]["memory"]) >= 400
    assert mebibytes(resources["limits"]["memory"]) >= 2 * mebibytes(resources["requests"]["memory"]) - 1


def test_the_pods_run_as_the_image_user() -> None:
    _, stages = parse()
    user = next(i.args for i in reversed(stages[-1].instructions) if i.keyword == "USER")
    pod = one("Deployment", "cellstate-api")["spec"]["template"]["spec"]
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    image_models = next(i.args for i in stages[-1].instructions if i.keyword == "ENV")
    assert one("ConfigMap", "cellstate-config")["data"]["CELLSTATE_MODELS_DIR"] in image_models
