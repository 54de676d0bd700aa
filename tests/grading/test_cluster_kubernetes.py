"""The instructor guide's ``DaskCluster`` (workers beside a JupyterHub on Kubernetes), as far as
one machine can check it: read from the guide, it is valid under the dask-kubernetes operator's
own schema with no field that Kubernetes would drop; the operator's own code makes of it a
scheduler Deployment and Service and worker Deployments whose names, labels, ports, Secrets and
hub network rule fit together; and the commands of those pods, run here with their Secrets as
Kubernetes mounts them, grade a class as a local run does."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, stop_group
from test_cluster import MLMCOURSE, _class, _grade, _wait_for

GUIDE = Path(__file__).resolve().parents[2] / "book" / "instructor_guide.md"
NAMESPACE = "grading"  # the guide's kubectl -n
_YAML = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
_SECRET = re.compile(r"create secret generic (?P<name>\S+)(?P<files>(?: --from-file=\S+)+)")
_VARIABLE = re.compile(r"\$\((\w+)\)")
ALWAYS_KEPT = ("apiVersion", "kind", "metadata")
"""A custom resource's fields that the API server keeps whatever its schema says."""


@functools.cache
def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _guide_yaml() -> list[dict[str, Any]]:
    import yaml

    return [yaml.safe_load(block) for block in _YAML.findall(_guide())]


def _the(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _guide_yaml() if doc.get("kind") == kind]
    return found


def _the_hub_values() -> dict[str, Any]:
    (values,) = [doc for doc in _guide_yaml() if "singleuser" in doc]
    return values


def _crd_schema() -> dict[str, Any]:
    import yaml

    crd = (files("dask_kubernetes") / "operator" / "deployment" / "helm"
           / "dask-kubernetes-operator" / "crds" / "daskcluster.yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the schema is 280 kB
    (version,) = yaml.load(crd.read_text(encoding="utf-8"), Loader=loader)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def _dropped(value: Any, schema: dict[str, Any], at: str) -> list[str]:
    """The fields of ``value`` that an API server would prune as unknown to ``schema`` (a
    structural schema: an object keeps only its ``properties``, or any key when it has
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields``)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list):
        return [d for i, item in enumerate(value)
                for d in _dropped(item, schema.get("items", {}), f"{at}[{i}]")]
    if not isinstance(value, dict):
        return []
    if "properties" in schema:
        known = schema["properties"]
        return [d for key, item in value.items()
                for d in (_dropped(item, known[key], f"{at}.{key}") if key in known
                          else [f"{at}.{key}"])]
    if isinstance(schema.get("additionalProperties"), dict):
        return [d for key, item in value.items()
                for d in _dropped(item, schema["additionalProperties"], f"{at}.{key}")]
    return [f"{at}.{key}" for key in value]


def _variables(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment variables (``env``, as the operator sets it)."""
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _expanded(words: list[str], variables: dict[str, str]) -> list[str]:
    """A container's command as the kubelet runs it: ``$(NAME)`` replaced by the container's
    variable ``NAME`` (left as it is when there is none)."""
    return [_VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), word)
            for word in words]


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def _the_pods() -> dict[str, dict[str, Any]]:
    """The scheduler's Deployment and Service and one worker's Deployment, made from the guide's
    ``DaskCluster`` by the operator's own functions, as it does for ``kubectl apply``."""
    from dask_kubernetes.operator.controller import (
        build_default_worker_group_spec,
        build_scheduler_deployment_spec,
        build_scheduler_service_spec,
        build_worker_deployment_spec,
    )

    cluster = _the("DaskCluster")
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    group = build_default_worker_group_spec(name, spec["worker"], {}, {})
    return {
        "scheduler": build_scheduler_deployment_spec(name, spec["scheduler"]["spec"], {}, {}),
        "service": build_scheduler_service_spec(name, spec["scheduler"]["service"], {}, {}),
        "worker": build_worker_deployment_spec(group["metadata"]["name"], NAMESPACE, name,
                                               "0123456789", group["spec"]["worker"]["spec"],
                                               {}, {}),
    }


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _certs_secret(deployment: dict[str, Any]) -> tuple[str, str]:
    """The folder a pod's command takes its certificates from, and the Secret mounted there."""
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    folder = _option(container["command"], "--certs")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return folder, volume["secret"]["secretName"]


def _guide_secrets() -> dict[str, set[str]]:
    """The Secrets the guide's ``kubectl create secret`` commands make, with their files."""
    return {m["name"]: {Path(f).name for f in m["files"].split(" --from-file=") if f}
            for m in _SECRET.finditer(_guide())}


def test_the_guides_daskcluster_is_valid_under_the_operators_schema() -> None:
    import jsonschema

    cluster, schema = _the("DaskCluster"), _crd_schema()
    jsonschema.Draft4Validator(schema).validate(cluster)
    kept = {key: value for key, value in cluster.items() if key not in ALWAYS_KEPT}
    assert _dropped(kept, schema, "") == []
    # the check sees a misspelt field, which Kubernetes would drop without a word
    misspelt = {**kept, "spec": {**kept["spec"], "worker": {**kept["spec"]["worker"],
                                                           "replica": 4}}}
    assert _dropped(misspelt, schema, "") == [".spec.worker.replica"]


def test_the_operators_pods_service_secrets_and_hub_rule_fit_together() -> None:
    pods = _the_pods()
    scheduler, service, worker = pods["scheduler"], pods["service"], pods["worker"]
    scheduler_pod_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= scheduler_pod_labels.items()
    (port,) = service["spec"]["ports"]
    (named,) = [p for p in _container(scheduler)["ports"] if p["name"] == port["targetPort"]]
    command = _container(scheduler)["command"]
    assert command[:3] == ["mlmcourse", "cluster", "scheduler"]
    assert int(_option(command, "--port")) == named["containerPort"]

    # the worker reaches the scheduler through the Service the operator names
    words = _expanded(_container(worker)["command"], _variables(_container(worker)))
    assert words[:3] == ["mlmcourse", "cluster", "worker"]
    assert words[3] == f"tls://{service['metadata']['name']}:{port['port']}"
    assert _option(words, "--name") == worker["metadata"]["name"]

    # each pod's certificates are a Secret the guide makes, with what its role needs
    secrets = _guide_secrets()
    for deployment, role in ((scheduler, "scheduler"), (worker, "worker")):
        _, secret = _certs_secret(deployment)
        assert secrets[secret] == {"ca.pem", f"{role}.pem"}, (secret, secrets)
    assert _container(worker)["securityContext"] == {"privileged": True}

    # the hub's rule lets user servers reach exactly the scheduler's port, in its namespace
    (rule,) = _the_hub_values()["singleuser"]["networkPolicy"]["egress"]
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": NAMESPACE}
    assert peer["podSelector"]["matchLabels"].items() <= scheduler_pod_labels.items()
    assert rule["ports"] == [{"port": named["containerPort"], "protocol": "TCP"}]
    address = f"tls://{service['metadata']['name']}.{NAMESPACE}:{port['port']}"
    assert f"--cluster\n{address}" in _guide().replace(" ", "\n")


def _mount_secret(folder: Path, certs: Path, names: set[str]) -> None:
    """A Secret's files as the kubelet mounts them: links into a hidden ``..data`` folder,
    each file mode 0400 (the guide's ``defaultMode``)."""
    data = folder / "..data"
    data.mkdir(parents=True)
    for name in names:
        (data / name).write_bytes((certs / name).read_bytes())
        (data / name).chmod(0o400)
        (folder / name).symlink_to(Path("..data") / name)


@pytest.mark.slow
def test_the_operators_pods_commands_grade_a_class_as_a_local_run_does(
        tmp_path: Path, needs_root: None) -> None:
    pods, secrets = _the_pods(), _guide_secrets()
    certs = tmp_path / "made-by-the-administrator"
    subprocess.run([*MLMCOURSE, "cluster", "certs", str(certs)], check=True,
                   capture_output=True)
    mine = tmp_path / "cluster-certs"  # what the instructor's server on the hub is given
    mine.mkdir(mode=0o700)
    for name in ("ca.pem", "client.pem"):
        (mine / name).write_bytes((certs / name).read_bytes())
        (mine / name).chmod(0o600)
    service = pods["service"]["metadata"]["name"]
    (service_port,) = pods["service"]["spec"]["ports"]
    port = free_port()  # the pods' port, 8786, may be taken on this machine
    processes: dict[str, subprocess.Popen] = {}
    names = ["honest_1", "always_equal", "os_exit"]
    for where in ("local", "cluster"):
        _class(tmp_path / where, names)
    try:
        for role, ready in (("scheduler", "listening on"), ("worker", "Registered to")):
            deployment = pods[role]
            folder, secret = _certs_secret(deployment)
            mounted = tmp_path / role / "certs"
            _mount_secret(mounted, certs, secrets[secret])
            variables = _variables(_container(deployment))
            words = _expanded(_container(deployment)["command"], variables)
            here = {folder: str(mounted), str(service_port["port"]): str(port),
                    f"tls://{service}:{service_port['port']}": f"tls://127.0.0.1:{port}"}
            words = [here.get(word, word) for word in words]
            assert words[0] == "mlmcourse"
            log = tmp_path / role / "log"
            print(f"[{role}] {shlex.join(words)}")
            with log.open("wb") as out:
                processes[role] = subprocess.Popen(
                    [*MLMCOURSE, *words[1:]], stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **variables})
            _wait_for(log, ready, processes[role])
        remote, remote_rows = _grade(tmp_path / "cluster", "--cluster",
                                     f"tls://127.0.0.1:{port}", "--certs", str(mine),
                                     "--timeout", "60")
    finally:
        for process in reversed(processes.values()):
            stop_group(process)
    local, local_rows = _grade(tmp_path / "local", "--jobs", "2", "--timeout", "60")
    assert remote.returncode == local.returncode == 1, remote.stderr[-2000:]  # os_exit fails
    assert remote_rows == local_rows
