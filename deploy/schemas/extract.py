#!/usr/bin/env python3
"""Writes JSON schemas for the custom kinds oxcart's manifests use, from their CRDs.

kubernetes-validate knows only Kubernetes' own kinds and passes any other silently, so
.ci/validate-custom-kinds checks Istio's, Argo CD's and Argo Rollouts' objects against
these files. They come from the npm packages of kubernetes-models-ts (MIT), which carry
each CRD's openAPIV3Schema as generated from the projects' own CRD manifests; this
script takes them from pinned versions (`npm pack`, from the registry), and makes them
strict: an object schema that lists its properties refuses any other, as the API server
would drop them without a word (a misspelt `timout` is lost, not rejected).

    python3 deploy/schemas/extract.py   # rewrite the files (needs npm)
"""

import json
import pathlib
import re
import subprocess
import tarfile
import tempfile

HERE = pathlib.Path(__file__).resolve().parent

# (package, version, module path in the package, kind)
KINDS = [
    ("@kubernetes-models/istio", "2.3.0", "networking.istio.io/v1beta1", "Gateway"),
    ("@kubernetes-models/istio", "2.3.0", "networking.istio.io/v1beta1", "VirtualService"),
    ("@kubernetes-models/istio", "2.3.0", "networking.istio.io/v1beta1", "DestinationRule"),
    ("@kubernetes-models/istio", "2.3.0", "networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("@kubernetes-models/istio", "2.3.0", "security.istio.io/v1beta1", "PeerAuthentication"),
    ("@kubernetes-models/istio", "2.3.0", "security.istio.io/v1beta1", "AuthorizationPolicy"),
    ("@kubernetes-models/argo-rollouts", "0.3.2", "argoproj.io/v1alpha1", "Rollout"),
    ("@kubernetes-models/argo-rollouts", "0.3.2", "argoproj.io/v1alpha1", "AnalysisTemplate"),
    ("@kubernetes-models/argo-cd", "2.5.0", "argoproj.io/v1alpha1", "Application"),
    ("@kubernetes-models/argo-cd", "2.5.0", "argoproj.io/v1alpha1", "AppProject"),
]


def unpack(package, version, into):
    subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=into, check=True,
                   stdout=subprocess.DEVNULL)
    # @scope/name@1.2.3 packs as scope-name-1.2.3.tgz
    tgz = pathlib.Path(into) / (package.lstrip("@").replace("/", "-") + f"-{version}.tgz")
    root = pathlib.Path(into) / tgz.stem
    with tarfile.open(tgz) as archive:
        archive.extractall(root, filter="data")
    return root / "package"


def schema_of(module):
    """The `const schema = {…};` literal of a model module: JSON, as generated."""
    text = module.read_text()
    match = re.search(r"const schema = (\{.*?\n\});\n", text, re.S)
    return json.loads(match.group(1))


def strict(node):
    """Objects with listed properties refuse others; OpenAPI's `nullable` is dropped
    (a manifest has no business writing null); ObjectMeta is any object."""
    if isinstance(node, dict):
        if "$ref" in node:
            return {"type": "object"}
        node = {k: strict(v) for k, v in node.items() if k != "nullable"}
        if "oneOf" in node and any(o == {"type": "null"} for o in node["oneOf"]):
            rest = [o for o in node.pop("oneOf") if o != {"type": "null"}]
            node.update(rest[0] if len(rest) == 1 else {"oneOf": rest})
        if node.get("type") == "object" and node.get("properties") and \
                not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def restore_descriptions(kind, schema):
    """kubernetes-models drops every key named `description` from the schemas it
    generates, the documentation and, by mistake, the properties of that name too. Those
    the manifests use are put back."""
    if kind == "AppProject":
        spec = schema["properties"]["spec"]["properties"]
        spec["description"] = {"type": "string"}
        spec["roles"]["items"]["properties"]["description"] = {"type": "string"}
    return schema


def main():
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for package, version, path, kind in KINDS:
            if (package, version) not in roots:
                roots[(package, version)] = unpack(package, version, tmp)
            raw = schema_of(roots[(package, version)] / path / f"{kind}.js")
            schema = strict(restore_descriptions(kind, raw))
            schema["$comment"] = f"{path} {kind}, from {package}@{version} (MIT), made strict by extract.py"
            out = HERE / path / f"{kind}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"{out.relative_to(HERE)}")


if __name__ == "__main__":
    main()
