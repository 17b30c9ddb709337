"""The rendered Kubernetes objects of an overlay, and the checks their hardening must pass.

Each ``check_*`` function takes the objects ``kustomize build`` printed and returns a list of
problems, one line each naming the object; an empty list means the check passes.
test_k8s.py runs every check on every overlay, and breaks a copy of the prod objects one way
per check to see that check report it: a check that cannot fail is no check.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = ROOT / "bin" / "kustomize"
OVERLAYS = ("dev", "prod")

Obj = dict[str, Any]

#: Who each component calls, as the design (../shared/DESIGN.md) and mesh/supervisor.py's
#: *_TARGET settings have it, and the stores it uses. The NetworkPolicies must allow exactly
#: this (plus DNS; the control plane also reaches the Kubernetes API).
TALKS_TO: dict[str, set[str]] = {
    "gateway": {"xds", "session", "history", "presence", "inference", "ingest", "forms", "catalog", "web"},
    "session": {"history", "nats", "scylla"},  # Connect follows contacts' presence: FilterContacts
    "history": {"session", "nats", "scylla"},  # CreateConversation: LookupUsers
    "presence": {"history", "nats", "scylla"},  # SetTyping: membership; contacts
    "inference": {"history", "nats"},  # Reply reads and stores history
    "ingest": {"inference", "nats", "qdrant"},  # Embed
    "ingest-worker": {"ingest", "inference", "nats", "qdrant"},
    "forms": {"nats", "scylla"},
    "forms-worker": {"nats", "scylla"},
    "catalog": set(),
    "web": set(),
    "xds": set(),
    "nats": {"nats"},
    "scylla": {"scylla"},
    "qdrant": {"qdrant"},
}
#: Client ports of each component, and the ports its own peers use between them.
CLIENT_PORTS: dict[str, set[int]] = {
    "gateway": {8080},
    "xds": {18000},
    "session": {50051},
    "history": {50052},
    "presence": {50053},
    "inference": {50054},
    "ingest": {50055},
    "forms": {50056},
    "catalog": {50050},
    "web": {8000},
    "nats": {4222},
    "scylla": {9042},
    "qdrant": {6333, 6334},
}
METRICS_PORT = 9100
PEER_PORTS: dict[str, set[int]] = {"nats": {6222}, "scylla": {7000}, "qdrant": {6335}}
#: Processes of the chatmesh image that serve gRPC (and grpc.health.v1): probed over gRPC.
#: The workers (services.<name>.worker) serve only /metrics.
GRPC_MODULES = re.compile(r"^(services\.[a-z]+|mesh\.catalog|mesh\.xds)$")
#: Secrets holding private signing keys, and the only components that may mount each.
PRIVATE_KEY_SECRETS: dict[str, set[str]] = {
    "chatmesh-access-token-signing-key": {"session"},
    "chatmesh-service-token-signing-key": {"inference", "ingest", "ingest-worker"},
}
#: The only component with a Kubernetes API token, and all it may do.
API_CLIENT = "xds"
XDS_RULES = [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
#: Volume types Pod Security Admission's "restricted" profile allows (the namespace enforces it).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def render(overlay: str) -> list[Obj]:
    """``kustomize build deploy/k8s/overlays/<overlay>``, parsed (a fresh copy each call: callers may change it).

    Raises:
        FileNotFoundError: bin/kustomize is missing (``make bin/kustomize`` installs it).
        RuntimeError: kustomize failed.
    """
    return copy.deepcopy(list(_render(overlay)))


@cache
def _render(overlay: str) -> tuple[Obj, ...]:
    if not KUSTOMIZE.is_file():
        raise FileNotFoundError(f"{KUSTOMIZE} missing: run `make bin/kustomize`")
    out = subprocess.run(  # noqa: S603 - our own binary and path
        [str(KUSTOMIZE), "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {overlay} failed: {out.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


# ---- reading objects -----------------------------------------------------------------------


def name(obj: Obj) -> str:
    """``Kind/name``."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


def component(obj: Obj) -> str:
    """The short name of a workload (``chatmesh-ingest-worker`` -> ``ingest-worker``)."""
    return str(obj["metadata"]["name"]).removeprefix("chatmesh-")


def of_kind(objs: list[Obj], *kinds: str) -> list[Obj]:
    """The objects of these kinds."""
    return [o for o in objs if o["kind"] in kinds]


def find(objs: list[Obj], kind: str, obj_name: str) -> Obj:
    """The one object of this kind and name.

    Raises:
        KeyError: there is none.
    """
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == obj_name:
            return o
    raise KeyError(f"{kind}/{obj_name}")


def workloads(objs: list[Obj]) -> list[Obj]:
    """Deployments and StatefulSets."""
    return of_kind(objs, *WORKLOAD_KINDS)


def pod_spec(workload: Obj) -> Obj:
    """A workload's pod template spec (the object itself: changes to it change the workload)."""
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    """A workload's pod template labels."""
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def containers(workload: Obj, init: bool = True) -> Iterator[Obj]:
    """The workload's containers (and init containers)."""
    spec = pod_spec(workload)
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def is_chatmesh_image(container: Obj) -> bool:
    """Whether the container runs the chatmesh image (the Dockerfile at the root)."""
    return str(container["image"]).split(":")[0].rsplit("/", 1)[-1] == "chatmesh"


def module_of(container: Obj) -> str | None:
    """The ``python -m`` module a chatmesh-image container runs (its first argument), else None."""
    if not is_chatmesh_image(container) or container.get("command"):
        return None
    args = container.get("args") or []
    return str(args[0]) if args else None


def env_of(container: Obj) -> dict[str, str]:
    """A container's plain env values (``valueFrom`` entries as ``<from>``)."""
    return {e["name"]: str(e.get("value", "<from>")) for e in container.get("env", [])}


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches ``labels``."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("250m", "1Gi", 2) as a number.

    Raises:
        ValueError: not a quantity this parser knows.
    """
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


# ---- checks ----------------------------------------------------------------------------------


def _grpc_port(container: Obj) -> int | None:
    for port in container.get("ports", []):
        if port.get("name") == "grpc":
            return int(port["containerPort"])
    return None


def check_probes(objs: list[Obj]) -> list[str]:
    """Every container has startup, readiness and liveness probes; gRPC servers' are ``grpc`` on their port."""
    problems = []
    for w in workloads(objs):
        for c in containers(w, init=False):
            where = f"{name(w)} container {c['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{where}: no {probe}")
            module = module_of(c)
            if module is None or not GRPC_MODULES.match(module):
                continue
            port = _grpc_port(c)
            if port is None:
                problems.append(f"{where}: a gRPC server without a port named grpc")
                continue
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                grpc = c.get(probe, {}).get("grpc")
                if grpc is None:
                    problems.append(f"{where}: {probe} is not a grpc probe")
                elif int(grpc["port"]) != port:
                    problems.append(f"{where}: {probe} checks port {grpc['port']}, the server listens on {port}")
    return problems


def check_resources(objs: list[Obj]) -> list[str]:
    """Every container (init containers too) requests and limits CPU and memory, requests <= limits."""
    problems = []
    for w in workloads(objs):
        for c in containers(w):
            where = f"{name(w)} container {c['name']}"
            resources = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                if request is None or limit is None:
                    problems.append(f"{where}: {resource} request and limit must both be set")
                elif quantity(request) > quantity(limit):
                    problems.append(f"{where}: {resource} request {request} above its limit {limit}")
    return problems


def check_security_context(objs: list[Obj]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, seccomp RuntimeDefault."""
    problems = []
    for w in workloads(objs):
        spec = pod_spec(w)
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{name(w)}: pod securityContext.runAsNonRoot is not true")
        if pod.get("runAsUser", 1) == 0:
            problems.append(f"{name(w)}: pod runs as uid 0")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name(w)}: pod seccompProfile is not RuntimeDefault")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{name(w)}: {flag}")
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                problems.append(
                    f"{name(w)}: volume {volume['name']} of type {sorted(kinds)}, which the restricted "
                    "Pod Security profile refuses"
                )
        for c in containers(w):
            where = f"{name(w)} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod.get("runAsUser", 1)) == 0:
                problems.append(f"{where}: runs as uid 0")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            capabilities = sc.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if capabilities.get("add"):
                problems.append(f"{where}: adds capabilities {capabilities['add']}")
            if sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            if any("hostPort" in p for p in c.get("ports", [])):
                problems.append(f"{where}: binds a host port")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if is_chatmesh_image(c) and "/tmp" not in mounts:  # noqa: S108 - the path checked, not used
                problems.append(f"{where}: read-only root filesystem without a /tmp volume")
    return problems


def check_disruption_budgets(objs: list[Obj]) -> list[str]:
    """Every workload with more than one replica has a PodDisruptionBudget that selects its pods."""
    problems = []
    pdbs = of_kind(objs, "PodDisruptionBudget")
    for w in workloads(objs):
        if int(w["spec"].get("replicas", 1)) <= 1:
            continue
        labels = pod_labels(w)
        if not any(selects(p["spec"]["selector"], labels) for p in pdbs):
            problems.append(f"{name(w)}: {w['spec']['replicas']} replicas and no PodDisruptionBudget")
    for p in pdbs:
        spec = p["spec"]
        if spec.get("maxUnavailable") in (0, "0%") or spec.get("minAvailable") == "100%":
            problems.append(f"{name(p)}: allows no disruption at all (node drains would hang)")
    return problems


def _peer_components(peers: list[Obj], by_labels: dict[str, dict[str, str]]) -> set[str] | None:
    """The components a rule's peers select; None when a peer is outside the namespace's pods."""
    found: set[str] = set()
    for peer in peers:
        if "ipBlock" in peer or ("namespaceSelector" in peer and "podSelector" not in peer):
            return None
        if "namespaceSelector" in peer:
            continue  # kube-dns and the monitoring namespace: checked apart
        found |= {comp for comp, labels in by_labels.items() if selects(peer["podSelector"], labels)}
    return found


def _is_dns(rule: Obj) -> bool:
    ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
    peers = rule.get("to", [])
    return (
        bool(peers)
        and ports <= {("UDP", 53), ("TCP", 53)}
        and all(
            p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "kube-system"
            and p.get("podSelector", {}).get("matchLabels", {}).get("k8s-app") == "kube-dns"
            for p in peers
        )
    )


def _is_monitoring(rule: Obj) -> bool:
    peers = rule.get("from", [])
    return bool(peers) and all(
        set(p) == {"namespaceSelector"}
        and p["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
        for p in peers
    )


@dataclass
class Reach:
    """What the NetworkPolicies let one component do."""

    egress: dict[str, set[int]]
    """Component -> ports it may connect to."""
    ingress_from: dict[str, set[int]]
    """Component -> ports it may be reached on from it."""
    outside_ingress: set[int]
    """Ports reachable from anywhere (rules without peers, or with ipBlocks)."""
    outside_egress: set[int]
    """Ports it may reach outside the namespace's pods (ipBlocks)."""
    dns: bool
    monitoring: set[int] = field(default_factory=set)
    """Ports Prometheus (the namespace ``monitoring``) may scrape."""


def reach(objs: list[Obj]) -> dict[str, Reach]:
    """What every workload may reach and be reached from, by the NetworkPolicies."""
    by_labels = {component(w): pod_labels(w) for w in workloads(objs)}
    policies = of_kind(objs, "NetworkPolicy")
    result = {}
    for comp, labels in by_labels.items():
        r = Reach({}, {}, set(), set(), False)
        for policy in policies:
            spec = policy["spec"]
            if not selects(spec["podSelector"], labels):
                continue
            for rule in spec.get("egress", []):
                ports = {int(p["port"]) for p in rule.get("ports", [])}
                if _is_dns(rule):
                    r.dns = True
                    continue
                targets = _peer_components(rule.get("to", []), by_labels)
                if targets is None or not rule.get("to"):
                    r.outside_egress |= ports or {0}
                    continue
                for t in targets:
                    r.egress.setdefault(t, set()).update(ports or {0})
            for rule in spec.get("ingress", []):
                ports = {int(p["port"]) for p in rule.get("ports", [])}
                if _is_monitoring(rule):
                    r.monitoring |= ports or {0}
                    continue
                sources = _peer_components(rule.get("from", []), by_labels)
                if sources is None or not rule.get("from"):
                    r.outside_ingress |= ports or {0}
                    continue
                for s in sources:
                    r.ingress_from.setdefault(s, set()).update(ports or {0})
        result[comp] = r
    return result


def check_network_policies(objs: list[Obj]) -> list[str]:
    """Default deny; only the gateway reachable from outside; each component reaches what it calls, no more."""
    problems = []
    policies = of_kind(objs, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] in ({}, {"matchLabels": {}})
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for comp, r in reach(objs).items():
        expected = TALKS_TO.get(comp)
        if expected is None:
            problems.append(f"{comp}: a workload the design does not list (add it to TALKS_TO)")
            continue
        if not r.dns:
            problems.append(f"{comp}: may not resolve names (no egress to kube-dns)")
        if set(r.egress) != expected:
            extra, missing = sorted(set(r.egress) - expected), sorted(expected - set(r.egress))
            problems.append(
                f"{comp}: egress to {sorted(r.egress)}; the design says {sorted(expected)} "
                f"(extra {extra}, missing {missing})"
            )
        for target, ports in r.egress.items():
            allowed = PEER_PORTS.get(target, set()) if target == comp else CLIENT_PORTS.get(target, set())
            if not ports <= allowed:
                problems.append(f"{comp}: egress to {target} on {sorted(ports)}, its ports are {sorted(allowed)}")
        if comp == "gateway":
            if r.outside_ingress != CLIENT_PORTS["gateway"]:
                problems.append(f"gateway: reachable from outside on {sorted(r.outside_ingress)}, want 8080 only")
        elif r.outside_ingress:
            problems.append(f"{comp}: reachable from outside the namespace on {sorted(r.outside_ingress)}")
        if comp == API_CLIENT:
            if not r.outside_egress <= {443, 6443}:
                problems.append(f"{comp}: egress outside on {sorted(r.outside_egress)}, the API server's are 443/6443")
        elif r.outside_egress:
            problems.append(f"{comp}: egress outside the namespace on {sorted(r.outside_egress)}")
        if not r.monitoring <= {METRICS_PORT}:
            problems.append(f"{comp}: Prometheus may reach {sorted(r.monitoring)}, not only {METRICS_PORT}")
        callers = {src for src, dsts in TALKS_TO.items() if comp in dsts and src != comp}
        if set(r.ingress_from) - {comp} != callers:
            problems.append(
                f"{comp}: reachable from {sorted(set(r.ingress_from) - {comp})}; its callers are {sorted(callers)}"
            )
        for source, ports in r.ingress_from.items():
            allowed = PEER_PORTS.get(comp, set()) if source == comp else CLIENT_PORTS.get(comp, set())
            if not ports <= allowed:
                problems.append(f"{comp}: reachable from {source} on {sorted(ports)}, not only {sorted(allowed)}")
    return problems


def _host_ports(value: str) -> set[tuple[str, int]]:
    """(component, port) pairs named in a setting's value: targets, NATS URLs, CQL hosts, Qdrant URLs."""
    found = set()
    for host, port in re.findall(r"chatmesh-([a-z-]+?)(?:-\d+\.chatmesh-[a-z-]+-headless)?:(\d+)", value):
        found.add((host, int(port)))
    return found


def check_env_reaches(objs: list[Obj]) -> list[str]:
    """Every address a container's settings name is one its NetworkPolicies let it reach."""
    problems = []
    allowed = reach(objs)
    for w in workloads(objs):
        comp = component(w)
        for c in containers(w, init=False):
            env = env_of(c)
            for key, value in env.items():
                targets = _host_ports(value)
                if key.endswith("CQL__HOSTS"):
                    port = int(env.get(key.replace("HOSTS", "PORT"), "9042"))
                    targets |= {("scylla", port) for _ in json.loads(value)}
                if key.endswith("QDRANT_URL"):  # calls go over gRPC: each node's REST port + 1
                    targets |= {(t, p + 1) for t, p in targets}
                for target, port in targets:
                    if port not in allowed[comp].egress.get(target, set()):
                        problems.append(f"{name(w)}: {key} names {target}:{port}, which its egress does not allow")
    return problems


def check_service_accounts(objs: list[Obj]) -> list[str]:
    """No API token anywhere but the control plane's; its Role reads endpointslices only."""
    problems = []
    accounts = {a["metadata"]["name"]: a for a in of_kind(objs, "ServiceAccount")}
    for w in workloads(objs):
        spec = pod_spec(w)
        account = spec.get("serviceAccountName", "default")
        wants_token = component(w) == API_CLIENT
        if account == "default" or account not in accounts:
            problems.append(f"{name(w)}: runs as service account {account!r}, not one of its own")
            continue
        mounted = spec.get("automountServiceAccountToken", accounts[account].get("automountServiceAccountToken", True))
        if wants_token and mounted is not True:
            problems.append(f"{name(w)}: the control plane needs its API token mounted")
        if not wants_token and mounted is not False:
            problems.append(f"{name(w)}: mounts an API token it does not need")
        if not wants_token and accounts[account].get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount/{account}: automountServiceAccountToken is not false")
    if of_kind(objs, "ClusterRole", "ClusterRoleBinding"):
        problems.append("cluster-wide RBAC: the mesh needs none")
    roles = of_kind(objs, "Role")
    if [r["metadata"]["name"] for r in roles] != [f"chatmesh-{API_CLIENT}"]:
        problems.append(f"Roles {[r['metadata']['name'] for r in roles]}: want chatmesh-{API_CLIENT} only")
    for role in roles:
        rules = [{k: sorted(v) for k, v in rule.items()} for rule in role.get("rules", [])]
        if rules != [{k: sorted(v) for k, v in rule.items()} for rule in XDS_RULES]:
            problems.append(f"{name(role)}: rules {rules}; want get/list/watch on discovery.k8s.io endpointslices")
    for binding in of_kind(objs, "RoleBinding"):
        subjects = [(s["kind"], s["name"]) for s in binding.get("subjects", [])]
        if subjects != [("ServiceAccount", f"chatmesh-{API_CLIENT}")]:
            problems.append(f"{name(binding)}: binds {subjects}")
    return problems


def check_secrets(objs: list[Obj]) -> list[str]:
    """Keys come as Secret volumes, never env; private keys only where they sign."""
    problems = []
    for w in workloads(objs):
        comp = component(w)
        for c in containers(w):
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    problems.append(f"{name(w)}: env {e['name']} from a Secret (mount it as a file)")
                if "PRIVATE KEY" in str(e.get("value", "")):
                    problems.append(f"{name(w)}: env {e['name']} holds a key")
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    problems.append(f"{name(w)}: envFrom a Secret")
        for volume in pod_spec(w).get("volumes", []):
            secret = volume.get("secret", {}).get("secretName")
            if secret in PRIVATE_KEY_SECRETS and comp not in PRIVATE_KEY_SECRETS[secret]:
                problems.append(f"{name(w)}: mounts {secret}, which only {sorted(PRIVATE_KEY_SECRETS[secret])} need")
            mode = volume.get("secret", {}).get("defaultMode")
            if secret in PRIVATE_KEY_SECRETS and (mode is None or mode & 0o077):
                problems.append(f"{name(w)}: {secret} readable by group or others (defaultMode {mode})")
    return problems


def check_exposure(objs: list[Obj]) -> list[str]:
    """Only the gateway's Service may be a LoadBalancer or NodePort, and no Ingress routes elsewhere."""
    problems = []
    for s in of_kind(objs, "Service"):
        if s["spec"].get("type", "ClusterIP") in ("LoadBalancer", "NodePort") and component(s) != "gateway":
            problems.append(f"{name(s)}: type {s['spec']['type']}: only the gateway is reachable from outside")
    for ingress in of_kind(objs, "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                if path["backend"]["service"]["name"] != "chatmesh-gateway":
                    problems.append(f"{name(ingress)}: routes to {path['backend']['service']['name']}")
    return problems


def check_images(objs: list[Obj]) -> list[str]:
    """Every image is pinned: a tag (or digest) that is not ``latest``."""
    problems = []
    for w in workloads(objs):
        for c in containers(w):
            image = str(c["image"])
            if "@sha256:" in image:
                continue
            last = image.rsplit("/", 1)[-1]
            tag = last.split(":", 1)[1] if ":" in last else ""
            if tag in ("", "latest"):
                problems.append(f"{name(w)} container {c['name']}: image {image} is not pinned")
    return problems


CHECKS = (
    check_probes,
    check_resources,
    check_security_context,
    check_disruption_budgets,
    check_network_policies,
    check_env_reaches,
    check_service_accounts,
    check_secrets,
    check_exposure,
    check_images,
)
