"""Checks rendered Kustomize overlays (one multi-document YAML file per overlay).

Built-in objects are validated against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate (strict: unknown fields fail), for the oldest and the newest
Kubernetes version the manifests support. Objects of the two CRDs the manifests use
(CloudNativePG Cluster, Prometheus Operator ServiceMonitor) have no bundled schema: their
required fields are checked here. Then the deployment's own rules: the coordinator's
replicas, probes and migrations, one signer per HSM partition reachable from the
coordinator only, a hardened pod for every container, no secret values in production,
and every referenced Secret and ConfigMap accounted for.

Usage: check_k8s.py RENDERED.yaml... (the overlay's name is the file's stem)
"""

import pathlib
import re
import sys
import tomllib

import kubernetes_validate
import yaml

# The oldest Kubernetes the manifests are written for, and the newest with bundled schemas.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version())]

CRDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

# Secrets an operator creates in production (docs/operations.md lists each one).
OPERATOR_SECRETS = {"signer-hsm-pin", "signer-hsm-client"}
# Secrets in the base that the CloudNativePG component replaces by the operator's.
CNPG_APP_SECRET = "{cluster}-app"

COORDINATOR_POD = {"app.kubernetes.io/name": "coordinator", "app.kubernetes.io/component": "api"}
SECRET_NAME = re.compile(r"PASSWORD|PIN|TOKEN|SECRET|DATABASE_URL", re.IGNORECASE)
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}

REPO = pathlib.Path(__file__).resolve().parents[2]


class Overlay:
    def __init__(self, path: pathlib.Path):
        self.name = path.stem
        self.docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        self.errors: list[str] = []

    def error(self, obj, message: str):
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}" if obj else "-"
        self.errors.append(f"{self.name}: {where}: {message}")

    def of_kind(self, *kinds):
        return [d for d in self.docs if d.get("kind") in kinds]

    def named(self, kind, name):
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def pod_labels(obj):
    return obj["spec"]["template"].get("metadata", {}).get("labels", {})


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def containers(spec):
    return spec.get("initContainers", []) + spec.get("containers", [])


def check_schemas(o: Overlay):
    for doc in o.docs:
        if not all(k in doc for k in ("apiVersion", "kind", "metadata")) or "name" not in doc["metadata"]:
            o.error(doc, "needs apiVersion, kind and metadata.name")
            continue
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                o.error(doc, f"Kubernetes {version} schema: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                o.error(doc, f"no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']} "
                             "(a CRD must be added to CRDS with its own checks)")


def check_crds(o: Overlay):
    for c in o.of_kind("Cluster"):
        spec = c.get("spec", {})
        if c["apiVersion"] != "postgresql.cnpg.io/v1":
            o.error(c, "unknown Cluster apiVersion")
        if not isinstance(spec.get("instances"), int) or spec["instances"] < 2:
            o.error(c, "spec.instances must be an integer of at least 2 (a standby to fail over to)")
        if spec.get("minSyncReplicas", 0) < 1:
            o.error(c, "spec.minSyncReplicas must be at least 1: a failover must not lose commits")
        initdb = spec.get("bootstrap", {}).get("initdb", {})
        if not initdb.get("database") or not initdb.get("owner"):
            o.error(c, "spec.bootstrap.initdb needs database and owner")
        if not spec.get("storage", {}).get("size"):
            o.error(c, "spec.storage.size is required")
    for m in o.of_kind("ServiceMonitor"):
        spec = m.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        endpoints = spec.get("endpoints", [])
        if not endpoints:
            o.error(m, "spec.endpoints is empty")
        services = [s for s in o.of_kind("Service") if matches(selector, s["metadata"].get("labels", {}))]
        if not services:
            o.error(m, f"spec.selector {selector} matches no Service")
        for e in endpoints:
            if not any(e.get("port") in [p.get("name") for p in s["spec"]["ports"]] for s in services):
                o.error(m, f"endpoint port {e.get('port')!r} is not a named port of the selected Service")


def check_pods(o: Overlay):
    for w in o.of_kind(*WORKLOADS):
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            o.error(w, "automountServiceAccountToken must be false (no pod calls the Kubernetes API)")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            o.error(w, "host namespaces are not allowed")
        for v in spec.get("volumes", []):
            if "hostPath" in v:
                o.error(w, f"volume {v['name']}: hostPath is not allowed (restricted Pod Security)")
        for c in containers(spec):
            sc = c.get("securityContext", {})
            who = f"container {c['name']}"
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                o.error(w, f"{who}: runAsNonRoot must be true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                o.error(w, f"{who}: runs as uid 0")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                o.error(w, f"{who}: seccompProfile must be RuntimeDefault")
            if sc.get("allowPrivilegeEscalation") is not False:
                o.error(w, f"{who}: allowPrivilegeEscalation must be false")
            if sc.get("privileged"):
                o.error(w, f"{who}: privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                o.error(w, f"{who}: readOnlyRootFilesystem must be true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
                o.error(w, f"{who}: capabilities must drop ALL and add none")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory") \
                    or not res.get("limits", {}).get("memory"):
                o.error(w, f"{who}: needs cpu and memory requests and a memory limit")
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            if "@" not in last and (":" not in last or last.endswith(":latest")):
                o.error(w, f"{who}: image {image!r} needs a version tag or digest (not latest)")
            for env in c.get("env", []):
                # A *_FILE variable names where a secret is mounted: a path, not a value.
                if SECRET_NAME.search(env["name"]) and not env["name"].endswith("_FILE") \
                        and "value" in env:
                    if o.name != "dev" or not str(env["value"]).startswith("dev-only"):
                        o.error(w, f"{who}: {env['name']} has a literal value; take it from a Secret")


def check_references(o: Overlay):
    """Every Secret and ConfigMap a pod names exists or is accounted for."""
    configmaps = {d["metadata"]["name"] for d in o.of_kind("ConfigMap")}
    secrets = {d["metadata"]["name"] for d in o.of_kind("Secret")}
    cnpg = {CNPG_APP_SECRET.format(cluster=c["metadata"]["name"]) for c in o.of_kind("Cluster")}
    docs = (REPO / "docs" / "operations.md").read_text()
    for w in o.of_kind(*WORKLOADS):
        spec = pod_spec(w)
        wanted_cm, wanted_secret = set(), set()
        for v in spec.get("volumes", []):
            if "configMap" in v:
                wanted_cm.add(v["configMap"]["name"])
            if "secret" in v:
                wanted_secret.add(v["secret"]["secretName"])
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    wanted_secret.add(ref["secretKeyRef"]["name"])
                if "configMapKeyRef" in ref:
                    wanted_cm.add(ref["configMapKeyRef"]["name"])
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    wanted_secret.add(src["secretRef"]["name"])
                if "configMapRef" in src:
                    wanted_cm.add(src["configMapRef"]["name"])
        for name in sorted(wanted_cm - configmaps):
            o.error(w, f"ConfigMap {name!r} is not in the overlay")
        for name in sorted(wanted_secret - secrets):
            if o.name == "dev":
                o.error(w, f"Secret {name!r} is not generated by the dev overlay")
            elif name not in OPERATOR_SECRETS | cnpg:
                o.error(w, f"Secret {name!r} is neither made by CloudNativePG nor a known operator secret")
            elif name in OPERATOR_SECRETS and f"`{name}`" not in docs:
                o.error(w, f"Secret {name!r} is not listed in docs/operations.md")
    if o.name != "dev":
        for s in o.of_kind("Secret"):
            o.error(s, "a Secret with values in a non-dev overlay: create it in the cluster instead")


def check_services(o: Overlay):
    pods = o.of_kind(*WORKLOADS)
    for s in o.of_kind("Service"):
        selector = s["spec"].get("selector", {})
        targets = [w for w in pods if matches(selector, pod_labels(w)) and w["kind"] != "Job"]
        if not targets:
            o.error(s, f"selector {selector} matches no Deployment or StatefulSet")
            continue
        names = {p.get("name") for w in targets for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                o.error(s, f"targetPort {p['targetPort']!r} is no container port of the selected pods")


def probe_path(container, probe):
    return container.get(probe, {}).get("httpGet", {}).get("path")


def check_coordinator(o: Overlay):
    d = o.named("Deployment", "coordinator")
    if d is None:
        o.error(None, "no Deployment coordinator")
        return
    if d["spec"].get("replicas", 1) < 2:
        o.error(d, "needs at least 2 replicas: any one may be lost")
    if not matches(COORDINATOR_POD, pod_labels(d)):
        o.error(d, f"pods must carry {COORDINATOR_POD} (the Service, PDB and NetworkPolicy select them)")
    c = next((c for c in pod_spec(d)["containers"] if c["name"] == "coordinator"), None)
    if c is None:
        o.error(d, "no container coordinator")
        return
    if c.get("args", [])[:2] != ["serve", "--no-migrate"]:
        o.error(d, "replicas must run `serve --no-migrate` (the migration Job migrates)")
    if probe_path(c, "readinessProbe") != "/readyz":
        o.error(d, "readinessProbe must GET /readyz")
    if probe_path(c, "livenessProbe") != "/healthz":
        o.error(d, "livenessProbe must GET /healthz")
    env = {e["name"]: e for e in c.get("env", [])}
    if "secretKeyRef" not in env.get("DATABASE_URL", {}).get("valueFrom", {}):
        o.error(d, "DATABASE_URL must come from a Secret")
    config = env.get("COORDINATOR_CONFIG", {}).get("value", "")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    cm_volumes = {v["name"] for v in pod_spec(d).get("volumes", []) if "configMap" in v}
    if not any(config.startswith(mounts[v].rstrip("/") + "/") for v in cm_volumes if v in mounts):
        o.error(d, f"COORDINATOR_CONFIG {config!r} is not in a mounted ConfigMap")

    # The probes and the Service reach the ports the config file binds.
    volume = next((v for v in pod_spec(d).get("volumes", []) if "configMap" in v
                   and config.startswith(mounts.get(v["name"], "//").rstrip("/") + "/")), None)
    cm = o.named("ConfigMap", volume["configMap"]["name"]) if volume else None
    key = config.rsplit("/", 1)[-1]
    if cm is None or key not in cm.get("data", {}):
        o.error(d, f"the config file {config!r} is not a key of the mounted ConfigMap")
    else:
        try:
            toml = tomllib.loads(cm["data"][key])
        except tomllib.TOMLDecodeError as e:
            o.error(cm, f"{key} is not TOML: {e}")
            toml = {}
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for section, port_name in (("api", "http"), ("metrics", "metrics")):
            bind = env.get(f"COORDINATOR_{section.upper()}__BIND", {}).get("value") \
                or toml.get(section, {}).get("bind", "")
            if not bind.startswith("0.0.0.0:") and not bind.startswith("[::]:"):
                o.error(d, f"[{section}] bind {bind!r} must listen on all addresses in a pod")
            elif int(bind.rsplit(":", 1)[1]) != ports.get(port_name):
                o.error(d, f"[{section}] bind {bind!r} is not the container port {port_name!r} "
                           f"({ports.get(port_name)})")

    pdbs = [p for p in o.of_kind("PodDisruptionBudget")
            if matches(p["spec"]["selector"].get("matchLabels", {}), pod_labels(d))]
    if not pdbs:
        o.error(d, "no PodDisruptionBudget selects the coordinator")
    for p in pdbs:
        if p["spec"].get("maxUnavailable") != 1 and p["spec"].get("minAvailable", 0) < 1:
            o.error(p, "needs maxUnavailable: 1 or minAvailable of at least 1")

    hpas = [h for h in o.of_kind("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == "coordinator"]
    if not hpas:
        o.error(d, "no HorizontalPodAutoscaler scales the coordinator")
    for h in hpas:
        if h["apiVersion"] != "autoscaling/v2":
            o.error(h, "must be autoscaling/v2")
        if h["spec"].get("minReplicas", 1) < 2 or h["spec"]["maxReplicas"] < h["spec"].get("minReplicas", 1):
            o.error(h, "minReplicas must be at least 2 and at most maxReplicas")

    jobs = [j for j in o.of_kind("Job")
            if any(x.get("args") == ["migrate"] for x in pod_spec(j)["containers"])]
    if len(jobs) != 1:
        o.error(d, f"expected one migration Job running `migrate`, found {len(jobs)}")
    for j in jobs:
        image = next(x["image"] for x in pod_spec(j)["containers"] if x.get("args") == ["migrate"])
        if image != c["image"]:
            o.error(j, f"migrates with {image}, but the Deployment runs {c['image']}")


def check_signer(o: Overlay):
    signers = [w for w in o.of_kind(*WORKLOADS) if pod_labels(w).get("app.kubernetes.io/name") == "signer"]
    if not signers:
        o.error(None, "no signer workload")
    policies = o.of_kind("NetworkPolicy")
    for s in signers:
        replicas = s["spec"].get("replicas", 1)
        if s["kind"] == "StatefulSet":
            ok = replicas == 1
        elif s["kind"] == "Deployment":
            ok = replicas == 1 and s["spec"].get("strategy", {}).get("type") == "Recreate"
        else:
            ok = False
        if not ok:
            o.error(s, "one process per HSM partition: a StatefulSet of 1 replica, or a Deployment of 1 with Recreate")
        if o.name != "dev" and any(e["name"].startswith("HSM_SO_PIN")
                                   for c in containers(pod_spec(s)) for e in c.get("env", [])):
            o.error(s, "the SO PIN is for the ceremony, never for a production signer")
        for c in pod_spec(s)["containers"]:
            listen = {e["name"]: e.get("value", "") for e in c.get("env", [])}.get("SIGNER_LISTEN", "")
            http = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}.get("http")
            if c["name"] == "signer" and (not listen.startswith("0.0.0.0:")
                                          or int(listen.rsplit(":", 1)[1]) != http):
                o.error(s, f"SIGNER_LISTEN {listen!r} is not 0.0.0.0 on the container port http ({http})")
        covering = [p for p in policies
                    if matches(p["spec"]["podSelector"].get("matchLabels", {}), pod_labels(s))
                    and "Ingress" in p["spec"].get("policyTypes", [])]
        if not covering:
            o.error(s, "no NetworkPolicy restricts ingress to the signer")
        ports = {x for c in pod_spec(s)["containers"] for cp in c.get("ports", [])
                 for x in (cp.get("containerPort"), cp.get("name"))}
        for p in covering:
            for rule in p["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    if port.get("port") not in ports:
                        o.error(p, f"ingress port {port.get('port')!r} is not a port of the signer")
                peers = rule.get("from", [])
                if not peers:
                    o.error(p, "an ingress rule without `from` admits everyone")
                for peer in peers:
                    if set(peer) != {"podSelector"} or \
                            peer["podSelector"].get("matchLabels") != COORDINATOR_POD:
                        o.error(p, f"ingress peer {peer} is not the coordinator's pods")


def main(paths):
    failed = False
    for path in map(pathlib.Path, paths):
        o = Overlay(path)
        if not o.docs:
            o.error(None, "renders to nothing")
        for check in (check_schemas, check_crds, check_pods, check_references, check_services,
                      check_coordinator, check_signer):
            check(o)
        kinds = sorted({d.get("kind") for d in o.docs})
        if o.errors:
            failed = True
            print(f"FAIL {o.name}: {len(o.errors)} problem(s)")
            for e in o.errors:
                print(f"  {e}")
        else:
            print(f"ok   {o.name}: {len(o.docs)} objects ({', '.join(kinds)}) "
                  f"valid for Kubernetes {' and '.join(KUBERNETES_VERSIONS)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
