"""The Kubernetes manifests under deploy/k8s parse, probe the right paths, run one worker
Deployment per Celery queue and exactly one beat."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.conf import settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def manifests() -> list[dict]:
    docs = []
    for path in sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def deployments() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == "Deployment"}


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_manifest_parses_and_kustomize_lists_them_all():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert all("kind" in doc and "metadata" in doc for doc in manifests())


def test_web_has_liveness_and_readiness_probes():
    web = container(deployments()["bankcore-web"])
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_one_worker_deployment_per_queue_and_exactly_one_beat():
    workers = {name: d for name, d in deployments().items() if name.startswith("bankcore-worker-")}
    queues = {}
    for name, deployment in workers.items():
        command = container(deployment)["command"]
        queues[command[command.index("-Q") + 1]] = name
    assert sorted(queues) == sorted(settings.CELERY_TASK_QUEUES_NAMES)
    beats = [d for d in deployments().values() if "beat" in container(d)["command"]]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1 and beats[0]["spec"]["strategy"]["type"] == "Recreate"
