"""The shipped manifests give ExportSessionModel a writable repository while every pod's /models stays
read-only (rendered with the real ``kubectl kustomize``)."""
from __future__ import annotations

import pytest

from tests.system.test_deploy_manifests import OVERLAYS, kustomize, of_kind, pod_spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_adapter_exports_to_a_shared_writable_repository_of_its_own(overlay):
    objects = kustomize(overlay)
    config = of_kind(objects, "ConfigMap")["dial-config"]["data"]
    spec = pod_spec(of_kind(objects, "Deployment")["adapter"])
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    export_repo = env["DIAL_EXPORT_REPO"]
    assert export_repo != config["DIAL_MODEL_REPO"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts[export_repo].get("readOnly")
    assert mounts[config["DIAL_MODEL_REPO"]].get("readOnly") is True
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[export_repo]["name"])
    claim = of_kind(objects, "PersistentVolumeClaim")[volume["persistentVolumeClaim"]["claimName"]]
    assert not volume["persistentVolumeClaim"].get("readOnly")
    # Every adapter replica must see every export (a taken name:version is refused on all of them).
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["name"] != "dial-models"
