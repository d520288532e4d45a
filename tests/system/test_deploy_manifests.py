"""The Kubernetes manifests and the Dockerfile, checked offline.

Every overlay is rendered with the real ``kubectl kustomize`` (what ``kubectl
apply -k`` runs; it renders offline, with no API server) and each object validated
with kubernetes-validate --strict against Kubernetes 1.33. ServiceMonitor is
a Prometheus Operator CRD that kubernetes-validate has no schema for, so its
structure is checked here by hand, against the Services it must select. It
comes only with the optional component ``components/monitoring``, rendered
here through an overlay made in a temporary folder, as an operator would.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.33"
CRD_GROUPS = ("monitoring.coreos.com/",)
SERVICES = {"segmenter": (50051, 9101), "adapter": (50052, 9102), "acquisition": (50053, 9103)}



def kustomize(overlay: str | Path) -> list[dict]:
    """The objects ``kubectl apply -k deploy/k8s/overlays/<overlay>`` (or of a folder) would send."""
    import yaml

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) must be on PATH to render the manifests"
    folder = overlay if isinstance(overlay, Path) else K8S / "overlays" / overlay
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def with_monitoring(overlay: str, folder: Path) -> list[dict]:
    """An operator's overlay: a shipped one plus the monitoring component."""
    folder.mkdir(parents=True, exist_ok=True)
    # kustomize refuses absolute paths to other kustomizations.
    base, component = (os.path.relpath(K8S / part, folder) for part in (f"overlays/{overlay}", "components/monitoring"))
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\ncomponents:\n  - {component}\n")
    return kustomize(folder)


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest or None
    return name, None, digest or None


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(request.param)


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- schema ---------------------------------------------------------------------------------------------------

def test_every_object_passes_strict_schema_validation(rendered):
    overlay, objects = rendered
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {error.message}")
        checked += 1
    assert checked >= 15


def test_strict_validation_rejects_a_misplaced_field():
    deployment = of_kind(kustomize("cpu"), "Deployment")["segmenter"]
    deployment["spec"]["annotations"] = {"misplaced": "yes"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


CORE_API_VERSIONS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}


def test_the_shipped_overlays_hold_only_core_kinds(rendered):
    """``kubectl apply -k`` must work on a cluster without the Prometheus Operator's CRDs."""
    overlay, objects = rendered
    extra = {f"{o['apiVersion']} {o['kind']}" for o in objects if o["apiVersion"] not in CORE_API_VERSIONS}
    assert not extra, f"{overlay}: {extra}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_monitoring_component_adds_only_the_service_monitor(overlay, tmp_path):
    plain = kustomize(overlay)
    monitored = with_monitoring(overlay, tmp_path / overlay)
    added = [o for o in monitored if o not in plain]
    assert [(o["kind"], o["metadata"]["name"]) for o in added] == [("ServiceMonitor", "dial")]
    assert len(monitored) == len(plain) + 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_monitor_scrapes_every_metrics_port(overlay, tmp_path):
    """Structural check of the CRD object kubernetes-validate cannot validate."""
    objects = with_monitoring(overlay, tmp_path / overlay)
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"dial"}
    monitors = of_kind(objects, "ServiceMonitor")
    assert list(monitors) == ["dial"]
    monitor = monitors["dial"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert spec["endpoints"], "a ServiceMonitor needs endpoints"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
        assert endpoint["scheme"] in ("http", "https")
        assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    scraped = {name for name, s in of_kind(objects, "Service").items()
               if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])}
    assert scraped == set(SERVICES)
    for name in scraped:
        ports = {p["name"]: p for p in of_kind(objects, "Service")[name]["spec"]["ports"]}
        assert ports["metrics"]["port"] == SERVICES[name][1]
        assert all(e["port"] in ports for e in spec["endpoints"])


# ---- workloads ------------------------------------------------------------------------------------------------

def test_every_service_has_a_deployment_service_and_disruption_budget(rendered):
    _, objects = rendered
    deployments, services, budgets = (of_kind(objects, k) for k in ("Deployment", "Service", "PodDisruptionBudget"))
    assert set(deployments) == set(SERVICES)
    for name, (grpc_port, metrics_port) in SERVICES.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selects(deployments[name]["spec"]["selector"]["matchLabels"], labels)
        assert selects(services[name]["spec"]["selector"], labels)
        assert {p["port"] for p in services[name]["spec"]["ports"]} == {grpc_port, metrics_port}
        assert selects(budgets[name]["spec"]["selector"]["matchLabels"], labels)
        env = {e["name"]: e["value"] for e in pod_spec(deployments[name])["containers"][0]["env"]}
        assert (int(env["DIAL_PORT"]), int(env["DIAL_METRICS_PORT"])) == (grpc_port, metrics_port)


def test_no_disruption_budget_can_block_a_node_drain(rendered):
    """A drain evicts through the PDB; it stalls if the budget allows no disruption at the fewest replicas."""
    overlay, objects = rendered
    deployments, autoscalers = of_kind(objects, "Deployment"), of_kind(objects, "HorizontalPodAutoscaler")
    for name, budget in of_kind(objects, "PodDisruptionBudget").items():
        spec = budget["spec"]
        fewest = min(deployments[name]["spec"]["replicas"],
                     autoscalers[name]["spec"]["minReplicas"] if name in autoscalers else 10**6)
        if "maxUnavailable" in spec:
            assert isinstance(spec["maxUnavailable"], int) and spec["maxUnavailable"] >= 1, (overlay, name)
        else:
            assert isinstance(spec["minAvailable"], int) and spec["minAvailable"] < fewest, (overlay, name)


def test_the_gpu_overlay_caps_the_gpus_claimed():
    """Every pod claims one GPU; the quota bounds the total and still fits each HPA's maximum plus a surge pod."""
    objects = kustomize("gpu")
    (quota,) = of_kind(objects, "ResourceQuota").values()
    assert quota["metadata"]["namespace"] == "dial"
    cap = int(quota["spec"]["hard"]["requests.nvidia.com/gpu"])
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    needed = 0
    for name, deployment in of_kind(objects, "Deployment").items():
        gpus = int(pod_spec(deployment)["containers"][0]["resources"]["requests"]["nvidia.com/gpu"])
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        needed += gpus * (autoscalers[name]["spec"]["maxReplicas"] + surge)
    assert needed <= cap
    # A cap far above what the autoscalers can reach would bound nothing.
    assert cap <= needed + 2
    assert not of_kind(kustomize("cpu"), "ResourceQuota")


def test_segmenter_and_acquisition_autoscale(rendered):
    _, objects = rendered
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    for name in ("segmenter", "acquisition"):
        hpa = autoscalers[name]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_pods_are_hardened(rendered):
    _, objects = rendered
    for name, deployment in of_kind(objects, "Deployment").items():
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "a read-only root needs a writable /tmp"
            assert mounts["/models"].get("readOnly") is True


def test_probes_are_native_grpc_on_the_plaintext_health_port(rendered):
    _, objects = rendered
    config = of_kind(objects, "ConfigMap")["dial-config"]["data"]
    health_port = int(config["DIAL_HEALTH_PORT"])
    for deployment in of_kind(objects, "Deployment").values():
        for container in pod_spec(deployment)["containers"]:
            declared = {p["containerPort"] for p in container["ports"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == health_port
            assert health_port in declared
            grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
            assert grace > float(config["DIAL_GRACE_SECONDS"]) + container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_configuration_and_secrets_are_wired(rendered):
    _, objects = rendered
    config = of_kind(objects, "ConfigMap")["dial-config"]["data"]
    claims = of_kind(objects, "PersistentVolumeClaim")
    for deployment in of_kind(objects, "Deployment").values():
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        container = spec["containers"][0]
        assert {"configMapRef": {"name": "dial-config"}} in container["envFrom"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for setting in ("DIAL_TLS_CERT", "DIAL_TLS_KEY", "DIAL_AUTH_TOKENS_FILE"):
            folder = str(Path(config[setting]).parent)
            assert "secret" in volumes[mounts[folder]], f"{setting} must come from a mounted Secret"
        for setting in ("DIAL_MODEL_REPO", "DIAL_MODEL_CACHE", "DIAL_RASTER_ROOTS"):
            assert config[setting] in mounts, setting


def test_config_keys_name_real_settings():
    """A typo in a DIAL_* key would be silently ignored by the services; catch it here."""
    from dial_services.commands.serve import SERVICES

    fields = {name for config in SERVICES.values() for name in config.model_fields}
    objects = kustomize("cpu")
    keys = set(of_kind(objects, "ConfigMap")["dial-config"]["data"])
    for deployment in of_kind(objects, "Deployment").values():
        keys |= {e["name"] for e in pod_spec(deployment)["containers"][0]["env"] if e["name"].startswith("DIAL_")}
    unknown = {k for k in keys if k.removeprefix("DIAL_").lower() not in fields}
    assert not unknown


def test_adapter_sessions_survive_replica_loss():
    """Several adapter replicas share one ReadWriteMany session store."""
    objects = kustomize("cpu")
    adapter = of_kind(objects, "Deployment")["adapter"]
    assert adapter["spec"]["replicas"] > 1
    assert "dial.io/session-store" in adapter["metadata"]["annotations"]
    claim = of_kind(objects, "PersistentVolumeClaim")["dial-sessions"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "dial.io/why-rwx" in claim["metadata"]["annotations"]
    spec = pod_spec(adapter)
    volume = next(v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "dial-sessions")
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == of_kind(objects, "ConfigMap")["dial-config"]["data"]["DIAL_SESSION_STORE"]
    assert not mount.get("readOnly")
    assert of_kind(objects, "PodDisruptionBudget")["adapter"]["spec"]["maxUnavailable"] < adapter["spec"]["replicas"]


def test_acquisition_reads_the_session_store_read_only():
    """Ranking an Adapter session reads the store the Adapter writes, at the path the shared config names."""
    objects = kustomize("cpu")
    spec = pod_spec(of_kind(objects, "Deployment")["acquisition"])
    volume = next(v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "dial-sessions")
    assert volume["persistentVolumeClaim"]["readOnly"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == of_kind(objects, "ConfigMap")["dial-config"]["data"]["DIAL_SESSION_STORE"]
    assert mount["readOnly"]


def test_network_policy_denies_by_default_and_opens_service_ports():
    objects = kustomize("cpu")
    policies = of_kind(objects, "NetworkPolicy")
    deny = policies["dial-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    allow = policies["dial-services"]["spec"]
    pod_labels = [pod_spec(d) and d["spec"]["template"]["metadata"]["labels"]
                  for d in of_kind(objects, "Deployment").values()]
    assert all(selects(allow["podSelector"]["matchLabels"], labels) for labels in pod_labels)
    opened = {p["port"] for rule in allow["ingress"] for p in rule["ports"]}
    assert {port for pair in SERVICES.values() for port in pair} | {8081} == opened


def test_overlays_differ_in_image_and_gpu_scheduling():
    for overlay in OVERLAYS:
        objects = kustomize(overlay)
        config = of_kind(objects, "ConfigMap")["dial-config"]["data"]
        for deployment in of_kind(objects, "Deployment").values():
            spec = pod_spec(deployment)
            container = spec["containers"][0]
            name, tag, digest = split_image(container["image"])
            assert tag and tag != "latest" and name != "dial"
            assert tag.endswith(f"-{overlay}")
            gpus = container["resources"]["limits"].get("nvidia.com/gpu")
            if overlay == "gpu":
                assert gpus == "1" and container["resources"]["requests"]["nvidia.com/gpu"] == "1"
                assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
                # The patch must not have dropped the base's volumes, probes or hardening.
                assert container["readinessProbe"]["grpc"] and container["securityContext"]["readOnlyRootFilesystem"]
            else:
                assert gpus is None and "tolerations" not in spec
        assert config["DIAL_PROVIDER"] == ("cpu" if overlay == "cpu" else "auto")
    gpu = kustomize("gpu")
    assert of_kind(gpu, "HorizontalPodAutoscaler")["segmenter"]["spec"]["maxReplicas"] == 4


def test_everything_lands_in_one_namespace(rendered):
    _, objects = rendered
    assert of_kind(objects, "Namespace")["dial"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] \
        == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"dial"}


# ---- the Dockerfile -------------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages(instructions) -> dict[str, list[tuple[str, str]]]:
    found, current = {}, None
    for keyword, rest in instructions:
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip().lower() if " AS " in rest.upper() else rest
            found[current] = []
        elif current is not None:
            found[current].append((keyword, rest))
    return found


def test_dockerfile_is_safe_to_run_read_only_as_non_root():
    instructions = dockerfile_instructions(REPO / "Dockerfile")
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    by_stage = stages(instructions)
    for target in ("cpu", "gpu"):
        assert target in by_stage, f"no {target} target"
        body = by_stage[target]
        users = [rest for kw, rest in body if kw == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root")
        assert users[-1].split(":")[0].isdigit(), "a numeric USER lets runAsNonRoot verify it"
        env = " ".join(rest for kw, rest in body if kw == "ENV")
        # Written once (services/malloc.env) and applied by the dial entrypoint to itself.
        assert "GLIBC_TUNABLES" not in env
        entrypoints = [json.loads(rest) for kw, rest in body if kw == "ENTRYPOINT"]
        assert entrypoints and entrypoints[-1][0] == "dial"
        assert "PYTHONDONTWRITEBYTECODE=1" in env, "a read-only root cannot take .pyc files"
    for kw, rest in instructions:
        if kw == "FROM":
            image = rest.split()[0]
            image = args.get(image.strip("${}"), image) if image.startswith("$") else image
            if image == "scratch" or image in by_stage or image.lower() in by_stage:
                continue
            _, tag, digest = split_image(image)
            assert (tag and tag != "latest") or digest, f"base image {image} must be pinned"
        if kw == "RUN":
            for command in re.split(r"&&|;", rest):
                words = shlex.split(command)
                if "pip" in words and "install" in words:
                    assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt", command


def test_gpu_image_replaces_onnxruntime_before_installing_the_gpu_build():
    body = stages(dockerfile_instructions(REPO / "Dockerfile"))["gpu-build"]
    runs = " && ".join(rest for kw, rest in body if kw == "RUN")
    uninstall, install = runs.find("pip uninstall -y onnxruntime"), runs.find("onnxruntime-gpu")
    assert 0 <= uninstall < install
    assert "download.pytorch.org/whl/cu" in runs, "the GPU image needs the CUDA torch"
    cpu_runs = " ".join(rest for kw, rest in stages(dockerfile_instructions(REPO / "Dockerfile"))["cpu-build"]
                        if kw == "RUN")
    assert "download.pytorch.org/whl/cpu" in cpu_runs


def test_dockerignore_keeps_secrets_and_state_out_of_the_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs", "**/__pycache__"):
        assert entry in ignored


def test_acquisition_replicas_share_the_queue_job_store():
    """Queue jobs outlive the replica that took them, and any replica the HPA adds can answer for them."""
    objects = kustomize("cpu")
    acquisition = of_kind(objects, "Deployment")["acquisition"]
    assert of_kind(objects, "HorizontalPodAutoscaler")["acquisition"]["spec"]["maxReplicas"] > 1
    claim = of_kind(objects, "PersistentVolumeClaim")["dial-queues"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    spec = pod_spec(acquisition)
    volume = next(v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "dial-queues")
    container = spec["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DIAL_JOB_STORE"] == mount["mountPath"]
