"""Render a kustomization without kubectl: the subset of kustomize that deploy/k8s uses.

    python deploy/render.py deploy/k8s/overlays/cpu > dial.yaml

Supported: ``resources`` (files and kustomization folders), ``namespace``,
``images`` (newName, newTag, digest), ``patches`` given by ``path`` or
inline ``patch`` as strategic-merge patches (targeted by their own kind and
name) or as JSON 6902 operation lists (with a ``target``). Anything else in
a kustomization is refused, so the output never silently differs from what
``kubectl apply -k`` would apply. The manifests stay valid for real
kustomize; this exists so tests and air-gapped hosts can render them.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}

# Kubernetes' patchMergeKey for the lists we patch; other lists are replaced.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "envFrom": None, "volumes": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name",
}


class KustomizeError(ValueError):
    pass


def load_documents(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def render(folder: str | Path) -> list[dict]:
    """The objects ``kustomize build folder`` would produce, in order."""
    folder = Path(folder)
    spec_path = folder / "kustomization.yaml"
    if not spec_path.is_file():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{spec_path}: unsupported fields {sorted(unknown)}")

    objects: list[dict] = []
    for entry in spec.get("resources", []):
        target = (folder / entry).resolve()
        objects.extend(render(target) if target.is_dir() else load_documents(target))

    for patch in spec.get("patches", []):
        _apply_patch(objects, patch, folder)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]

    seen = set()
    for obj in objects:
        key = _identity(obj)
        if key in seen:
            raise KustomizeError(f"duplicate object {key}")
        seen.add(key)
    return objects


def _identity(obj: dict) -> tuple[str, str, str]:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    return group, obj.get("kind", ""), obj.get("metadata", {}).get("name", "")


# ---- patches ---------------------------------------------------------------------------------

def _apply_patch(objects: list[dict], patch: dict, folder: Path) -> None:
    if "path" in patch:
        documents = load_documents(folder / patch["path"])
    elif "patch" in patch:
        documents = [doc for doc in yaml.safe_load_all(patch["patch"]) if doc]
    else:
        raise KustomizeError(f"{folder}: a patch needs 'path' or 'patch'")
    for document in documents:
        if isinstance(document, list):
            if "target" not in patch:
                raise KustomizeError(f"{folder}: a JSON 6902 patch needs a target")
            targets = [o for o in objects if _matches(o, patch["target"])]
            if not targets:
                raise KustomizeError(f"{folder}: no object matches patch target {patch['target']}")
            for obj in targets:
                json6902(obj, document)
            continue
        target = patch.get("target") or {"kind": document.get("kind"), "name": document["metadata"]["name"]}
        targets = [o for o in objects if _matches(o, target)]
        if not targets:
            raise KustomizeError(f"{folder}: no object matches patch {target}")
        for obj in targets:
            merged = strategic_merge(obj, document)
            obj.clear()
            obj.update(merged)


def _matches(obj: dict, target: dict) -> bool:
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    checks = {"kind": obj.get("kind"), "name": obj.get("metadata", {}).get("name"), "group": group,
              "version": version, "namespace": obj.get("metadata", {}).get("namespace")}
    for key, wanted in target.items():
        if key not in checks:
            raise KustomizeError(f"unsupported patch target field {key!r}")
        if checks[key] != wanted:
            return False
    return True


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """Kubernetes strategic merge for maps and the keyed lists in MERGE_KEYS.

    ``null`` deletes a key; a list item with ``$patch: delete`` removes the
    item with its merge key; other lists are replaced, as Kubernetes does.
    """
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _without_directives(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(field, base + patch)
        if key is None:
            return _without_directives(patch)
        merged = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    merged.pop(index)
            elif index is None:
                merged.append(_without_directives(item))
            else:
                merged[index] = strategic_merge(merged[index], item, field)
        return merged
    return copy.deepcopy(patch)


def _merge_key(field: str | None, items: list) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        # Container ports merge on containerPort, Service ports on port.
        return "containerPort" if all("containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$patch")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return copy.deepcopy(value)


def json6902(obj: dict, operations: list[dict]) -> None:
    """Apply add, remove and replace operations (RFC 6902) in place."""
    for operation in operations:
        op, pointer = operation.get("op"), operation.get("path", "")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        if not parts:
            raise KustomizeError(f"JSON 6902 path {pointer!r} must name a field")
        parent = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op not in ("add", "remove", "replace"):
            raise KustomizeError(f"unsupported JSON 6902 operation {op!r}")
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                parent.pop(index)
            else:
                parent[index] = copy.deepcopy(operation["value"])
        else:
            if op in ("remove", "replace") and last not in parent:
                raise KustomizeError(f"JSON 6902 {op}: {pointer} does not exist")
            if op == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(operation["value"])


# ---- images ----------------------------------------------------------------------------------

def _set_image(objects: list[dict], image: dict) -> None:
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag, digest = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            else:
                tag = image.get("newTag", tag)
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest or None
    return name, None, digest or None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python deploy/render.py KUSTOMIZATION_FOLDER", file=sys.stderr)
        return 2
    yaml.safe_dump_all(render(args[0]), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
