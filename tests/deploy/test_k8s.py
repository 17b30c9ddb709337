"""deploy/k8s: every overlay renders, validates against the Kubernetes schemas, and keeps its hardening.

The checks live in manifests.py. Each runs on every overlay, and each is shown to fail on a
copy of the prod objects broken the way a careless edit would break them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from services.inference.settings import bundled_model_path
from tests.deploy import manifests
from tests.deploy.manifests import Obj, component, containers, env_of, find, module_of, pod_spec, workloads

#: The oldest Kubernetes the manifests promise (gRPC probes GA in 1.27, HPA v2, PDB v1) and the newest schemas.
K8S_VERSIONS = ("1.31.0", "1.37.0")
ROOT = manifests.ROOT


def objects(overlay: str) -> list[Obj]:
    """A fresh copy of an overlay's objects (tests may break it)."""
    return manifests.render(overlay)


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_overlay_renders_objects_the_kubernetes_schemas_accept_strictly(overlay: str) -> None:
    objs = objects(overlay)
    assert len(objs) > 50
    failures = []
    for version in K8S_VERSIONS:
        for obj in objs:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                failures.append(f"{manifests.name(obj)} against {version}: {exc}")
    assert failures == []


def test_the_validator_rejects_what_the_api_server_would() -> None:
    service = find(objects("dev"), "Service", "chatmesh-history")
    service["spec"]["portz"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("check", manifests.CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_overlay_passes_hardening_check(overlay: str, check: Callable[[list[Obj]], list[str]]) -> None:
    assert check(objects(overlay)) == []


# ---- each check fails when the manifests regress ---------------------------------------------


def _container(objs: list[Obj], kind: str, obj_name: str, index: int = 0, init: bool = False) -> Obj:
    spec = pod_spec(find(objs, kind, obj_name))
    container: Obj = spec["initContainers" if init else "containers"][index]
    return container


def _d(objs: list[Obj], obj_name: str) -> Obj:
    return find(objs, "Deployment", obj_name)


def _policy(objs: list[Obj], obj_name: str) -> Obj:
    return find(objs, "NetworkPolicy", obj_name)


def _drop_readiness(objs: list[Obj]) -> None:
    del _container(objs, "Deployment", "chatmesh-history")["readinessProbe"]


def _tcp_startup(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-session")["startupProbe"] = {"tcpSocket": {"port": 50051}}


def _probe_wrong_port(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-forms")["livenessProbe"]["grpc"]["port"] = 9100


def _drop_limits(objs: list[Obj]) -> None:
    del _container(objs, "Deployment", "chatmesh-gateway")["resources"]["limits"]


def _init_without_requests(objs: list[Obj]) -> None:
    del _container(objs, "StatefulSet", "chatmesh-scylla", init=True)["resources"]["requests"]


def _request_above_limit(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-inference")["resources"]["requests"]["memory"] = "64Gi"


def _writable_root(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-ingest-worker")["securityContext"]["readOnlyRootFilesystem"] = False


def _keep_capabilities(objs: list[Obj]) -> None:
    del _container(objs, "StatefulSet", "chatmesh-nats")["securityContext"]["capabilities"]


def _root_pod(objs: list[Obj]) -> None:
    pod = pod_spec(find(objs, "StatefulSet", "chatmesh-qdrant"))["securityContext"]
    del pod["runAsNonRoot"]
    pod["runAsUser"] = 0


def _escalating_init(objs: list[Obj]) -> None:
    _container(objs, "StatefulSet", "chatmesh-scylla", init=True)["securityContext"]["allowPrivilegeEscalation"] = True


def _no_seccomp(objs: list[Obj]) -> None:
    del pod_spec(_d(objs, "chatmesh-presence"))["securityContext"]["seccompProfile"]
    del _container(objs, "Deployment", "chatmesh-presence")["securityContext"]["seccompProfile"]


def _no_tmp(objs: list[Obj]) -> None:
    c = _container(objs, "Deployment", "chatmesh-catalog")
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/tmp"]  # noqa: S108


def _drop_pdb(objs: list[Obj]) -> None:
    objs.remove(find(objs, "PodDisruptionBudget", "chatmesh-session"))


def _pdb_blocks_drains(objs: list[Obj]) -> None:
    find(objs, "PodDisruptionBudget", "chatmesh-history")["spec"]["maxUnavailable"] = 0


def _drop_default_deny(objs: list[Obj]) -> None:
    objs.remove(_policy(objs, "chatmesh-default-deny"))


def _presence_calls_inference(objs: list[Obj]) -> None:
    _policy(objs, "chatmesh-presence")["spec"]["egress"].append(
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "chatmesh-inference"}}}],
            "ports": [{"protocol": "TCP", "port": 50054}],
        }
    )


def _history_open_to_everyone(objs: list[Obj]) -> None:
    _policy(objs, "chatmesh-history")["spec"]["ingress"].append({"ports": [{"protocol": "TCP", "port": 50052}]})


def _nats_open_to_web(objs: list[Obj]) -> None:
    nats = _policy(objs, "chatmesh-nats")["spec"]["ingress"][0]["from"]
    nats.append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "chatmesh-web"}}})


def _egress_to_internet(objs: list[Obj]) -> None:
    _policy(objs, "chatmesh-ingest")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})


def _gateway_closed(objs: list[Obj]) -> None:
    _policy(objs, "chatmesh-gateway")["spec"]["ingress"] = []


def _monitoring_reaches_grpc(objs: list[Obj]) -> None:
    for rule in _policy(objs, "chatmesh-session")["spec"]["ingress"]:
        if "namespaceSelector" in rule["from"][0]:
            rule["ports"].append({"protocol": "TCP", "port": 50051})


def _target_not_allowed(objs: list[Obj]) -> None:
    for e in _container(objs, "Deployment", "chatmesh-presence")["env"]:
        if e["name"] == "CHATMESH_PRESENCE_HISTORY_TARGET":
            e["value"] = "chatmesh-inference:50054"


def _automount_token(objs: list[Obj]) -> None:
    pod_spec(_d(objs, "chatmesh-session"))["automountServiceAccountToken"] = True


def _default_account(objs: list[Obj]) -> None:
    del pod_spec(_d(objs, "chatmesh-forms-worker"))["serviceAccountName"]


def _role_reads_secrets(objs: list[Obj]) -> None:
    find(objs, "Role", "chatmesh-xds")["rules"][0]["resources"].append("secrets")


def _role_writes(objs: list[Obj]) -> None:
    find(objs, "Role", "chatmesh-xds")["rules"][0]["verbs"].append("create")


def _cluster_role(objs: list[Obj]) -> None:
    objs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "chatmesh-xds"},
            "rules": [],
        }
    )


def _signing_key_in_history(objs: list[Obj]) -> None:
    pod_spec(_d(objs, "chatmesh-history"))["volumes"].append(
        {"name": "k", "secret": {"secretName": "chatmesh-access-token-signing-key", "defaultMode": 0o400}}
    )


def _key_in_env(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-session")["env"].append(
        {
            "name": "CHATMESH_SESSION_SIGNING_KEY",
            "valueFrom": {"secretKeyRef": {"name": "chatmesh-access-token-signing-key", "key": "access_token.pem"}},
        }
    )


def _world_readable_key(objs: list[Obj]) -> None:
    for volume in pod_spec(_d(objs, "chatmesh-inference"))["volumes"]:
        if volume.get("secret", {}).get("secretName") == "chatmesh-service-token-signing-key":
            volume["secret"]["defaultMode"] = 0o444


def _host_path(objs: list[Obj]) -> None:
    pod_spec(_d(objs, "chatmesh-ingest"))["volumes"].append({"name": "host", "hostPath": {"path": "/var/lib"}})


def _host_port(objs: list[Obj]) -> None:
    _container(objs, "Deployment", "chatmesh-web")["ports"][0]["hostPort"] = 8000


def _history_load_balancer(objs: list[Obj]) -> None:
    find(objs, "Service", "chatmesh-history")["spec"]["type"] = "LoadBalancer"


def _unpinned_image(objs: list[Obj]) -> None:
    _container(objs, "StatefulSet", "chatmesh-nats")["image"] = "nats"


REGRESSIONS: list[tuple[Callable[[list[Obj]], None], Callable[[list[Obj]], list[str]], str]] = [
    (_drop_readiness, manifests.check_probes, "Deployment/chatmesh-history container app: no readinessProbe"),
    (_tcp_startup, manifests.check_probes, "chatmesh-session container app: startupProbe is not a grpc probe"),
    (_probe_wrong_port, manifests.check_probes, "livenessProbe checks port 9100, the server listens on 50056"),
    (_drop_limits, manifests.check_resources, "chatmesh-gateway container app: cpu request and limit"),
    (_init_without_requests, manifests.check_resources, "chatmesh-scylla container config: cpu request and limit"),
    (_request_above_limit, manifests.check_resources, "memory request 64Gi above its limit"),
    (_writable_root, manifests.check_security_context, "chatmesh-ingest-worker container app: readOnlyRootFilesystem"),
    (_keep_capabilities, manifests.check_security_context, "chatmesh-nats container nats: capabilities do not drop"),
    (_root_pod, manifests.check_security_context, "StatefulSet/chatmesh-qdrant: pod runs as uid 0"),
    (_escalating_init, manifests.check_security_context, "chatmesh-scylla container config: allowPrivilegeEscalation"),
    (_no_seccomp, manifests.check_security_context, "Deployment/chatmesh-presence: pod seccompProfile"),
    (_no_tmp, manifests.check_security_context, "chatmesh-catalog container app: read-only root filesystem without"),
    (_host_path, manifests.check_security_context, "volume host of type ['hostPath']"),
    (_host_port, manifests.check_security_context, "chatmesh-web container app: binds a host port"),
    (_drop_pdb, manifests.check_disruption_budgets, "Deployment/chatmesh-session: 3 replicas and no PodDisruption"),
    (_pdb_blocks_drains, manifests.check_disruption_budgets, "chatmesh-history: allows no disruption"),
    (_drop_default_deny, manifests.check_network_policies, "no default-deny NetworkPolicy"),
    (_presence_calls_inference, manifests.check_network_policies, "presence: egress to ['history', 'inference'"),
    (_history_open_to_everyone, manifests.check_network_policies, "history: reachable from outside the namespace"),
    (_nats_open_to_web, manifests.check_network_policies, "nats: reachable from ['forms', 'forms-worker', 'history'"),
    (_egress_to_internet, manifests.check_network_policies, "ingest: egress outside the namespace"),
    (_gateway_closed, manifests.check_network_policies, "gateway: reachable from outside on [], want 8080 only"),
    (_monitoring_reaches_grpc, manifests.check_network_policies, "session: Prometheus may reach [9100, 50051]"),
    (_target_not_allowed, manifests.check_env_reaches, "HISTORY_TARGET names inference:50054"),
    (_automount_token, manifests.check_service_accounts, "chatmesh-session: mounts an API token it does not need"),
    (_default_account, manifests.check_service_accounts, "chatmesh-forms-worker: runs as service account 'default'"),
    (_role_reads_secrets, manifests.check_service_accounts, "Role/chatmesh-xds: rules"),
    (_role_writes, manifests.check_service_accounts, "Role/chatmesh-xds: rules"),
    (_cluster_role, manifests.check_service_accounts, "cluster-wide RBAC"),
    (_signing_key_in_history, manifests.check_secrets, "chatmesh-history: mounts chatmesh-access-token-signing-key"),
    (_key_in_env, manifests.check_secrets, "env CHATMESH_SESSION_SIGNING_KEY from a Secret"),
    (_world_readable_key, manifests.check_secrets, "chatmesh-service-token-signing-key readable by group"),
    (_unpinned_image, manifests.check_images, "chatmesh-nats container nats: image nats is not pinned"),
    (_history_load_balancer, manifests.check_exposure, "Service/chatmesh-history: type LoadBalancer"),
]


@pytest.mark.parametrize(("breakage", "check", "expected"), REGRESSIONS, ids=[r[0].__name__ for r in REGRESSIONS])
def test_hardening_check_reports_a_regression(
    breakage: Callable[[list[Obj]], None], check: Callable[[list[Obj]], list[str]], expected: str
) -> None:
    objs = objects("prod")
    assert check(objs) == []
    breakage(objs)
    problems = check(objs)
    assert any(expected in p for p in problems), problems


def test_every_check_is_shown_to_fail() -> None:
    assert {r[1] for r in REGRESSIONS} == set(manifests.CHECKS)


# ---- overlay shapes --------------------------------------------------------------------------


def test_dev_runs_one_replica_of_everything_without_autoscalers() -> None:
    objs = objects("dev")
    assert {int(w["spec"]["replicas"]) for w in workloads(objs)} == {1}
    assert manifests.of_kind(objs, "HorizontalPodAutoscaler") == []
    nats = find(
        objs,
        "ConfigMap",
        next(o["metadata"]["name"] for o in objs if o["metadata"]["name"].startswith("chatmesh-nats-config")),
    )
    assert "cluster {" not in nats["data"]["nats.conf"]
    for w in workloads(objs):
        for c in containers(w, init=False):
            for key, value in env_of(c).items():
                if key.endswith("NATS__STREAM_REPLICAS"):
                    assert value == "1", (manifests.name(w), key)


def test_prod_replicates_and_spreads_every_workload() -> None:
    objs = objects("prod")
    for w in workloads(objs):
        assert int(w["spec"]["replicas"]) >= 2, manifests.name(w)
        spec = pod_spec(w)
        keys = {t["topologyKey"] for t in spec.get("topologySpreadConstraints", [])}
        assert "topology.kubernetes.io/zone" in keys, manifests.name(w)
        assert "podAntiAffinity" in spec.get("affinity", {}), manifests.name(w)
        for term in spec.get("topologySpreadConstraints", []):
            assert manifests.selects(term["labelSelector"], manifests.pod_labels(w)), manifests.name(w)
    for stateful in manifests.of_kind(objs, "StatefulSet"):
        anti = pod_spec(stateful)["affinity"]["podAntiAffinity"]
        assert anti["requiredDuringSchedulingIgnoredDuringExecution"], manifests.name(stateful)


def test_prod_runs_three_node_stores_and_replicated_streams() -> None:
    objs = objects("prod")
    for store in ("chatmesh-nats", "chatmesh-scylla", "chatmesh-qdrant"):
        assert find(objs, "StatefulSet", store)["spec"]["replicas"] == 3
    conf = next(o for o in objs if o["metadata"]["name"].startswith("chatmesh-nats-config"))["data"]["nats.conf"]
    routes = re.findall(r"nats://chatmesh-nats-(\d)\.chatmesh-nats-headless:6222", conf)
    assert sorted(routes) == ["0", "1", "2"]
    seen = 0
    for w in workloads(objs):
        for c in containers(w, init=False):
            env = env_of(c)
            for key, value in env.items():
                if key.endswith("NATS__STREAM_REPLICAS"):
                    assert value == "3", (manifests.name(w), key)
                    seen += 1
                if key.endswith("NATS__URL"):
                    assert len(value.split(",")) == 3, (manifests.name(w), key)
                if key.endswith("CQL__HOSTS"):
                    assert len(json.loads(value)) == 3
                    assert env[key.replace("HOSTS", "REPLICATION_FACTOR")] == "3"
    assert seen == 8  # every service but the catalog, and both kinds of worker


def test_gateway_is_the_only_load_balancer_in_prod() -> None:
    objs = objects("prod")
    exposed = [
        o["metadata"]["name"] for o in manifests.of_kind(objs, "Service") if o["spec"].get("type") == "LoadBalancer"
    ]
    assert exposed == ["chatmesh-gateway"]
    assert find(objs, "Service", "chatmesh-gateway")["spec"]["externalTrafficPolicy"] == "Local"


def _metric_names(path: Path) -> set[str]:
    return set(re.findall(r'"(chatmesh_[a-z_]+)"', path.read_text(encoding="utf-8")))


def test_prod_autoscalers_scale_existing_deployments_on_metrics_that_are_exported() -> None:
    objs = objects("prod")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in manifests.of_kind(objs, "HorizontalPodAutoscaler")}
    for target, hpa in hpas.items():
        deployment = _d(objs, target)
        assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    for service in ("session", "history", "presence", "forms", "ingest", "gateway"):
        metrics = hpas[f"chatmesh-{service}"]["spec"]["metrics"]
        assert metrics[0]["resource"]["name"] == "cpu", service
    exported = _metric_names(ROOT / "services/inference/metrics.py") | _metric_names(
        ROOT / "services/ingest/metrics.py"
    )
    queue_metrics = {}
    for target in ("chatmesh-inference", "chatmesh-ingest-worker"):
        (metric,) = hpas[target]["spec"]["metrics"]
        assert metric["type"] == "External"
        queue_metrics[target] = metric["external"]["metric"]["name"]
    assert queue_metrics == {
        "chatmesh-inference": "chatmesh_inference_queue_depth",
        "chatmesh-ingest-worker": "chatmesh_ingest_queue_backlog_items",
    }
    assert set(queue_metrics.values()) <= exported


# ---- the manifests and the code agree --------------------------------------------------------

#: The settings class each process of the image loads.
SETTINGS = {
    "mesh.catalog": "mesh.catalog:CatalogSettings",
    "services.session": "services.session.settings:SessionSettings",
    "services.history": "services.history.settings:HistorySettings",
    "services.presence": "services.presence.settings:PresenceSettings",
    "services.inference": "services.inference.settings:InferenceSettings",
    "services.ingest": "services.ingest.settings:IngestSettings",
    "services.ingest.worker": "services.ingest.settings:IngestSettings",
    "services.forms": "services.forms.settings:FormsSettings",
    "services.forms.worker": "services.forms.settings:FormsSettings",
}


def _field_path_exists(cls: type[BaseModel], parts: list[str]) -> bool:
    field = cls.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return _field_path_exists(candidate, parts[1:])
    return False


def _chatmesh_processes(overlay: str) -> list[tuple[Obj, Obj, str]]:
    return [
        (w, c, module)
        for w in workloads(objects(overlay))
        for c in containers(w, init=False)
        if (module := module_of(c)) is not None and module in SETTINGS
    ]


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_setting_the_manifests_pass_is_one_the_process_reads(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    processes = _chatmesh_processes(overlay)
    assert {m for _, _, m in processes} == set(SETTINGS)
    for w, c, module in processes:
        module_name, cls_name = SETTINGS[module].split(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        assert issubclass(cls, BaseSettings)
        prefix = str(cls.model_config["env_prefix"])
        env = env_of(c)
        for key in env:
            assert key.startswith(prefix), (manifests.name(w), key)
            parts = key.removeprefix(prefix).lower().split("__")
            assert _field_path_exists(cls, parts), f"{manifests.name(w)}: {key} is no setting of {cls_name}"
        for key in [k for k in os.environ if k.startswith("CHATMESH_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key == "CHATMESH_INFERENCE_MODELS":  # the volume's files are not here: the bundled model stands in
                models = json.loads(value)
                assert all(Path(p).parent == Path("/models") for p in models.values()), value
                value = json.dumps({model: str(bundled_model_path()) for model in models})
            monkeypatch.setenv(key, "chatmesh-pod-0" if value == "<from>" else value)
        settings: Any = cls()  # a bad value raises pydantic's ValidationError naming the setting
        assert settings.host == "0.0.0.0"  # noqa: S104 - pods must listen beyond loopback for probes and peers
        grpc_ports = [p["containerPort"] for p in c.get("ports", []) if p["name"] == "grpc"]
        assert grpc_ports == ([settings.port] if settings.port else []), manifests.name(w)
        metrics = [p["containerPort"] for p in c["ports"] if p["name"] == "metrics"]
        assert metrics == [settings.metrics_port], manifests.name(w)


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_service_port_reaches_a_named_container_port(overlay: str) -> None:
    objs = objects(overlay)
    for service in manifests.of_kind(objs, "Service"):
        selector = service["spec"]["selector"]
        (workload,) = [
            w for w in workloads(objs) if manifests.selects({"matchLabels": selector}, manifests.pod_labels(w))
        ]
        ports = {p["name"]: p["containerPort"] for c in containers(workload, init=False) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), (manifests.name(service), target)


def test_the_components_are_the_designs() -> None:
    assert {component(w) for w in workloads(objects("prod"))} == set(manifests.TALKS_TO)


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_inference_threads_fit_its_cpu_limit(overlay: str) -> None:
    # The default thread count reads the affinity mask (every core of the node), not the
    # cgroup quota: unsized, llama.cpp's threads would be throttled mid-token.
    inference = _d(objects(overlay), "chatmesh-inference")
    (container,) = pod_spec(inference)["containers"]
    env = env_of(container)
    limit = manifests.quantity(container["resources"]["limits"]["cpu"])
    slots = int(env["CHATMESH_INFERENCE_SLOTS"])
    assert slots * int(env["CHATMESH_INFERENCE_N_THREADS"]) <= limit
    assert int(env["CHATMESH_INFERENCE_PROMPT_THREADS"]) <= limit
