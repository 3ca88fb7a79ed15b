"""Kubernetes manifests: strict schema validation plus the wiring a schema cannot see.

``kubernetes-validate --strict`` rejects unknown fields (a typo in a probe silently disables
it otherwise); the other tests check that selectors, ports, probes and config agree across
files, which is where hand-written manifests usually break.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate  # pinned in requirements.txt: a missing one is a broken venv, not a skip
import pytest
import yaml
from ops_fixtures import K8S, by_kind, docs

ROOT = Path(__file__).resolve().parents[1]
K8S_VERSION = "1.37.0"


def manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def container_named(pod: dict, name: str) -> dict:
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    return container


def parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_passes_strict_schema_validation(path):
    for doc in docs(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_really_rejects_unknown_fields():
    """Negative control: the validator must catch a misspelt field, or the test above is void."""
    doc = by_kind("Deployment", "neuroscan-model-server")
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ping"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_base_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) not installed")
def test_kustomize_build_renders_valid_objects():
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in rendered)
    for kind in ("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                 "PodDisruptionBudget", "Secret", "Service"):
        assert kind in kinds
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "neuroscan"


def test_model_server_probes_resources_and_security():
    dep = by_kind("Deployment", "neuroscan-model-server")
    pod = dep["spec"]["template"]["spec"]
    container = container_named(pod, "torchserve")
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["startupProbe"]["exec"]["command"][-1] == "/usr/local/lib/neuroscan-healthcheck.py"
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"inference": 8080, "metrics": 8082}  # management never leaves the pod
    env = {e["name"]: e for e in container["env"]}
    assert env["TS_MANAGEMENT_BIND_ADDRESS"]["value"] == "127.0.0.1"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert env["TS_BASE_CONFIG"]["value"] == f"{mount['mountPath']}/config.properties"



def test_management_proxy_takes_its_key_from_the_secret_and_fronts_the_loopback_api():
    pod = by_kind("Deployment", "neuroscan-model-server")["spec"]["template"]["spec"]
    proxy = container_named(pod, "management-proxy")
    key_ref = next(e for e in proxy["env"] if e["name"] == "MANAGEMENT_KEY")["valueFrom"]["secretKeyRef"]
    secret = by_kind("Secret")
    assert key_ref["name"] == secret["metadata"]["name"] and key_ref["key"] in secret["stringData"]
    assert "optional" not in key_ref  # no key, no proxy: never an open management API
    template = by_kind("ConfigMap", "neuroscan-management-proxy")["data"]["management.conf.template"]
    assert "${MANAGEMENT_KEY}" in template
    torchserve_env = {e["name"]: e.get("value") for e in container_named(pod, "torchserve")["env"]}
    assert f"proxy_pass http://{torchserve_env['TS_MANAGEMENT_BIND_ADDRESS']}:8081;" in template
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"management": 8091}
    assert "listen 8091;" in template
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    assert volumes[mounts["/etc/nginx/templates"]]["configMap"]["name"] == "neuroscan-management-proxy"
    assert "emptyDir" in volumes[mounts["/etc/nginx/conf.d"]]  # hides the image's default site on 8080
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    policy = by_kind("NetworkPolicy", "neuroscan-model-server")
    rules = {port["port"]: rule["from"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert rules[8091] == [{"podSelector": {"matchLabels": {"neuroscan.io/operator": "true"}}},
                           {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "neuroscan-dashboard"}}}]

def test_selectors_services_hpa_and_pdb_point_at_the_pods():
    for app in ("neuroscan-model-server", "neuroscan-dashboard"):
        dep = by_kind("Deployment", app)
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        svc = by_kind("Service", app)
        assert svc["spec"]["selector"].items() <= labels.items()
        port_names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    server_labels = by_kind("Deployment", "neuroscan-model-server")["spec"]["template"]["metadata"]["labels"]
    pdb = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= server_labels.items()
    hpa = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "neuroscan-model-server"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB's maxUnavailable=1 then keeps one serving


def test_dashboard_keeps_history_on_the_claim_with_one_writer():
    dep = by_kind("Deployment", "neuroscan-dashboard")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    claim = by_kind("PersistentVolumeClaim", "neuroscan-history")["metadata"]["name"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["NEUROSCAN_DATABASE"].startswith(mount["mountPath"] + "/")
    assert env["NEUROSCAN_INFERENCE_URL"] == "http://neuroscan-model-server:8080"


def test_pacs_worker_shares_the_results_claim_and_reaches_the_pacs_and_the_proxy():
    """The worker writes the study results the dashboard reads: same pod, same claim, same file; both
    read the PACS account from the Secret that Orthanc's own pod mounts as its credentials file."""
    pod = by_kind("Deployment", "neuroscan-dashboard")["spec"]["template"]["spec"]
    dashboard, worker = container_named(pod, "dashboard"), container_named(pod, "pacs-worker")
    env = {c["name"]: {e["name"]: e.get("value") for e in c["env"]} for c in (dashboard, worker)}
    assert env["dashboard"]["NEUROSCAN_STUDY_RESULTS_DATABASE"] == env["pacs-worker"]["NEUROSCAN_PACS_RESULTS_DB"]
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert env["pacs-worker"]["NEUROSCAN_PACS_RESULTS_DB"].startswith(mounts["history"] + "/")
    assert worker["image"] == dashboard["image"] and worker["command"] == ["python3", "-m", "pacs"]
    service = by_kind("Service", "neuroscan-orthanc")
    assert env["pacs-worker"]["NEUROSCAN_PACS_PACS_URL"] == env["dashboard"]["NEUROSCAN_PACS_URL"] == \
        f"http://neuroscan-orthanc:{next(p['port'] for p in service['spec']['ports'] if p['name'] == 'http')}"
    metadata = by_kind("Service", "neuroscan-model-server-metadata")
    assert env["pacs-worker"]["NEUROSCAN_PACS_MANAGEMENT_URL"] == \
        f"http://neuroscan-model-server-metadata:{metadata['spec']['ports'][0]['port']}"  # the proxy, with the key
    proxy = container_named(by_kind("Deployment", "neuroscan-model-server")["spec"]["template"]["spec"],
                            "management-proxy")
    assert metadata["spec"]["ports"][0]["targetPort"] in {p["name"] for p in proxy["ports"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["management-key"]["secret"]["items"][0]["key"] == "torchserve-management-key"
    account_key = volumes["pacs-account"]["secret"]["items"][0]["key"]
    orthanc = by_kind("Deployment", "neuroscan-orthanc")["spec"]["template"]["spec"]
    (mount,) = [m for m in orthanc["containers"][0]["volumeMounts"] if m["name"] == "account"]
    assert mount["mountPath"] == "/srv/neuroscan/orthanc/credentials.json" and mount["subPath"] == account_key
    assert account_key in by_kind("Secret")["stringData"]


def test_orthanc_takes_dicom_only_from_the_modality_network_and_http_from_the_dashboard_pod():
    policy = by_kind("NetworkPolicy", "neuroscan-orthanc")
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert rules[8042] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "neuroscan-dashboard"}}}]
    assert [peer["ipBlock"]["cidr"] for peer in rules[4242]] == ["192.0.2.0/24"]  # a placeholder that matches no one
    proxy = next(r for r in by_kind("NetworkPolicy", "neuroscan-model-server")["spec"]["ingress"]
                 if r["ports"][0]["port"] == 8091)
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "neuroscan-dashboard"}}} in proxy["from"]


def test_configmap_matches_repo_config_except_the_documented_differences():
    cluster = parse_properties(by_kind("ConfigMap", "neuroscan-model-server-config")["data"]["config.properties"])
    local = parse_properties((ROOT / "config" / "config.properties").read_text())
    # set by the image's entrypoint from the environment, or deliberately different in-cluster
    owned_by_entrypoint = {"inference_address", "management_address", "metrics_address", "model_store"}
    deliberate = {"disable_token_authorization": "true"}
    moot_without_tokens = {"token_expiration_min"}
    for key, value in deliberate.items():
        assert cluster[key] == value
    for key in set(local) - owned_by_entrypoint - set(deliberate) - moot_without_tokens:
        assert cluster.get(key) == local[key], f"config.properties drifted on {key}"
    assert not set(cluster) & owned_by_entrypoint


def test_images_are_pinned_and_secrets_are_placeholders():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert set(tags) == {"neuroscan/model-server", "neuroscan/dashboard", "neuroscan/orthanc"}
    assert all(tag and tag != "latest" for tag in tags.values())
    pods = [by_kind("Deployment", app)["spec"]["template"]["spec"]
            for app in ("neuroscan-model-server", "neuroscan-dashboard", "neuroscan-orthanc")]
    for image in (c["image"] for pod in pods for c in pod["containers"]):
        name, _, tag = image.partition(":")
        assert name in tags or (tag and tag != "latest"), f"{image} is not pinned"
    secret = by_kind("Secret")
    assert secret["stringData"]["sentry-dsn"] == ""
    assert all("replace-me" in v for k, v in secret["stringData"].items() if k != "sentry-dsn")
