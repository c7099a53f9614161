#!/usr/bin/env python3
"""Static checks of Latch's rendered Kubernetes manifests against spin.toml.

Run by scripts/checks/k8s.sh (which renders every overlay first); needs PyYAML and
jsonschema from scripts/checks/requirements-k8s.txt.

  k8s_manifests.py split --rendered DIR --out DIR
      Writes every built-in object of every rendered overlay (and the Secret template)
      to its own file, for kubernetes-validate. Custom resources are left out: they have
      no upstream schema, and are checked against k8s/schemas/ by `check` instead.

  k8s_manifests.py check --rendered DIR --repo ROOT
      1. every custom resource (SpinApp, SpinAppExecutor; cert-manager's Certificate,
         Issuer, ClusterIssuer) validates against k8s/schemas/*.schema.json, and the
         schemas reject known-bad objects (so a lenient schema cannot pass);
      2. cross-object consistency (HPA targets, variables vs spin.toml, ConfigMap and
         Secret keys, routes, probes, selectors, sizing, TLS on every Ingress), see
         consistency_problems below;
      3. the consistency checks themselves catch known-bad mutations.
    Prints one line per check and a closing "N passed, N failed" line.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import math
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml
from jsonschema import Draft202012Validator, FormatChecker

CUSTOM_GROUPS = ("core.spinkube.dev/", "cert-manager.io/")
# Kinds without a namespace that can appear in a render (k8s/collector brings RBAC,
# the overlays a cert-manager ClusterIssuer).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "RuntimeClass", "PriorityClass", "StorageClass", "IngressClass", "ClusterIssuer"}
SCHEMA_FILES = {
    "SpinApp": "spinapp.schema.json",
    "SpinAppExecutor": "spinappexecutor.schema.json",
    "Certificate": "certificate.schema.json",
    "Issuer": "issuer.schema.json",
    "ClusterIssuer": "issuer.schema.json",
}
# ingress-nginx's annotations, and cert-manager's ingress-shim annotations (either makes
# cert-manager create a Certificate for the Ingress's `tls` entries by itself).
NGINX_ANNOTATION = "nginx.ingress.kubernetes.io/"
CERT_MANAGER_SHIM_ANNOTATIONS = ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer")
# The probes hit these paths on every pod (k8s/base/app/spinapp.yaml).
PROBE_COMPONENTS = ("health", "ready")
# Routes deliberately not exposed through the Ingress (the kubelet calls them directly).
PRIVATE_ROUTES = {"/ready"}
# The admin API (issue 15): routed only by an Ingress that restricts client addresses
# (k8s/base/ingress-admin.yaml), and that Ingress routes nothing else.
ADMIN_ROUTE_PREFIX = "/admin/"
ADMIN_ALLOWLIST_ANNOTATION = "nginx.ingress.kubernetes.io/whitelist-source-range"
# Idle memory must stay this many percentage points under the HPA memory target, or
# ordinary jitter keeps the HPA above target and it never scales back down.
IDLE_MEMORY_MARGIN_POINTS = 20
IDLE_MEMORY_ANNOTATION = "latch/idle-memory"
# The measured parts of a pod's memory under Spin (k8s/base/app/spinapp.yaml).
HASH_MEMORY_ANNOTATION = "latch/memory-per-hash"
INSTANCE_MEMORY_ANNOTATION = "latch/memory-per-instance"
MAX_INSTANCES_ANNOTATION = "latch/max-instances"
# A /ready answer waits for at most one database request; the probe must outlast it.
READINESS_DB_MARGIN_MS = 1000

QUANTITY_RE = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
QUANTITY_FACTORS = {
    None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}


def quantity(value: object) -> float:
    match = QUANTITY_RE.match(str(value))
    if not match:
        raise ValueError(f"unsupported quantity {value!r}")
    return float(match.group(1)) * QUANTITY_FACTORS[match.group(2)]


def load_docs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def is_custom(doc: dict) -> bool:
    return str(doc.get("apiVersion", "")).startswith(CUSTOM_GROUPS)


def name_of(doc: dict) -> str:
    return doc.get("metadata", {}).get("name", "?")


def ref(doc: dict) -> str:
    return f"{doc.get('kind')}/{name_of(doc)}"


# --------------------------------------------------------------------------- spin.toml


@dataclass
class SpinManifest:
    variables: dict[str, dict]
    components: set[str]
    routes: dict[str, str]  # route -> component id
    # component id -> components it calls through service chaining
    # (`http://<id>.spin.internal` in its allowed_outbound_hosts)
    chains: dict[str, set[str]] = field(default_factory=dict)
    # components with a private trigger (`route = { private = true }`)
    private: set[str] = field(default_factory=set)
    secret_variables: set[str] = field(default_factory=set)
    required_variables: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> "SpinManifest":
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        variables = data.get("variables", {})
        routes: dict[str, str] = {}
        private: set[str] = set()
        for trigger in data.get("trigger", {}).get("http", []):
            route = trigger.get("route")
            if isinstance(route, str):
                routes[route] = trigger["component"]
            else:  # `{ private = true }`: reachable through service chaining only
                private.add(trigger["component"])
        chains = {
            cid: {m.group(1) for host in component.get("allowed_outbound_hosts", [])
                  if (m := re.fullmatch(r"https?://([a-z0-9_-]+)\.spin\.internal(?::\d+)?", host))}
            for cid, component in data.get("component", {}).items()
        }
        return cls(
            variables=variables,
            components=set(data.get("component", {})),
            routes=routes,
            chains={cid: targets for cid, targets in chains.items() if targets},
            private=private,
            secret_variables={k for k, v in variables.items() if v.get("secret")},
            required_variables={k for k, v in variables.items() if v.get("required")},
        )


def ingress_rule_for_route(route: str) -> tuple[str, str]:
    """The (path, pathType) an nginx Ingress needs to send exactly this Spin route.

    A `:name` parameter segment cannot be matched by an Ingress path: such a route needs
    Prefix on the segments before its first parameter (Spin answers 404 for the other
    paths under it). A route equal to that prefix is then carried by the Prefix rule too.
    """
    if route.endswith("/..."):
        return route[: -len("/...")], "Prefix"
    segments = route.split("/")
    for i, segment in enumerate(segments):
        if segment.startswith(":"):
            return "/".join(segments[:i]) or "/", "Prefix"
    return route, "Exact"


# --------------------------------------------------------------------------- results


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, label: str, problems: list[str]) -> bool:
        if problems:
            self.failed += 1
            print(f"FAIL {label}")
            for problem in problems:
                print(f"     - {problem}")
            return False
        self.passed += 1
        print(f"ok   {label}")
        return True


# --------------------------------------------------------------------------- schemas


def schema_validators(schema_dir: Path) -> dict[str, Draft202012Validator]:
    validators: dict[str, Draft202012Validator] = {}
    by_file: dict[str, Draft202012Validator] = {}
    for kind, filename in SCHEMA_FILES.items():
        if filename not in by_file:
            schema = json.loads((schema_dir / filename).read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            by_file[filename] = Draft202012Validator(schema, format_checker=FormatChecker())
        validators[kind] = by_file[filename]
    return validators


def sample_key(doc: dict) -> str:
    """Samples for the schema self-test: one per kind, and per issuer type for issuers
    (the ACME mutations need an ACME issuer, not the local self-signed one)."""
    kind = doc.get("kind", "?")
    if kind in ("Issuer", "ClusterIssuer"):
        return f"{kind}/{next(iter(doc.get('spec') or {'?': None}))}"
    return kind


def schema_errors(validator: Draft202012Validator, doc: dict) -> list[str]:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def schema_self_test(validators: dict[str, Draft202012Validator], sample: dict[str, dict]) -> list[str]:
    """Each mutation must be rejected; a schema that accepts them checks nothing."""
    mutations = {
        "SpinApp": [
            ("replicas together with enableAutoscaling", lambda d: d["spec"].update(replicas=2)),
            ("no image", lambda d: d["spec"].pop("image")),
            ("no executor", lambda d: d["spec"].pop("executor")),
            ("an unknown spec field (`env`)", lambda d: d["spec"].update(env=[])),
            ("an upper-case variable name", lambda d: d["spec"]["variables"].append({"name": "DB_TYPE", "value": "x"})),
            ("a variable with both value and valueFrom",
             lambda d: d["spec"]["variables"].append(
                 {"name": "x", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})),
            ("a probe on a port", lambda d: d["spec"]["checks"]["readiness"]["httpGet"].update(port=8080)),
            ("an empty components list", lambda d: d["spec"].update(components=[])),
            ("a name that is not a Service name", lambda d: d["metadata"].update(name="1latch")),
            ("loadFromSecret with sqliteDatabases",
             lambda d: d["spec"].update(runtimeConfig={"loadFromSecret": "rc", "sqliteDatabases": [{"name": "default", "type": "spin"}]})),
            ("a malformed memory request", lambda d: d["spec"]["resources"]["requests"].update(memory="256MB")),
        ],
        "SpinAppExecutor": [
            ("no createDeployment", lambda d: d["spec"].pop("createDeployment")),
            ("both runtimeClassName and spinImage", lambda d: d["spec"]["deploymentConfig"].update(spinImage="x")),
            ("OTel headers (the executor has none)", lambda d: d["spec"]["deploymentConfig"]["otel"].update(headers="a=b")),
            ("createDeployment without deploymentConfig", lambda d: d["spec"].pop("deploymentConfig")),
        ],
        "Certificate": [
            ("no secretName", lambda d: d["spec"].pop("secretName")),
            ("no issuerRef", lambda d: d["spec"].pop("issuerRef")),
            ("an issuerRef kind cert-manager does not have", lambda d: d["spec"]["issuerRef"].update(kind="Issuers")),
            ("no identity (no dnsNames, commonName, ...)", lambda d: d["spec"].pop("dnsNames")),
            ("an unknown spec field (`hosts`)", lambda d: d["spec"].update(hosts=["latch.example.com"])),
            ("renewBefore in days (not a Go duration)", lambda d: d["spec"].update(renewBefore="30d")),
            ("renewBefore with renewBeforePercentage", lambda d: d["spec"].update(renewBeforePercentage=33)),
            ("an ECDSA key of 2048 bits", lambda d: d["spec"]["privateKey"].update(algorithm="ECDSA", size=2048)),
            ("an RSA key of 1024 bits", lambda d: d["spec"]["privateKey"].update(algorithm="RSA", size=1024)),
            ("an unknown rotationPolicy", lambda d: d["spec"]["privateKey"].update(rotationPolicy="Sometimes")),
            ("literalSubject with commonName",
             lambda d: d["spec"].update(literalSubject="CN=latch", commonName="latch")),
            ("a dnsName with a scheme", lambda d: d["spec"].update(dnsNames=["https://latch.example.com"])),
        ],
        "ClusterIssuer/acme": [
            ("two issuer types", lambda d: d["spec"].update(selfSigned={})),
            ("no issuer type", lambda d: d.update(spec={})),
            ("an ACME issuer without privateKeySecretRef", lambda d: d["spec"]["acme"].pop("privateKeySecretRef")),
            ("an ACME server over plain http",
             lambda d: d["spec"]["acme"].update(server="http://acme-v02.api.letsencrypt.org/directory")),
            ("an ACME email that is not an address", lambda d: d["spec"]["acme"].update(email="ops at example.com")),
            ("skipTLSVerify with a caBundle", lambda d: d["spec"]["acme"].update(skipTLSVerify=True, caBundle="AAAA")),
            ("a solver with both http01 and dns01",
             lambda d: d["spec"]["acme"]["solvers"][0].update(dns01={"route53": {"region": "eu-west-1"}})),
            ("an ingress solver with both class and ingressClassName",
             lambda d: d["spec"]["acme"]["solvers"][0]["http01"]["ingress"].update(**{"class": "nginx"})),
            ("an unknown ACME field (`contact`)", lambda d: d["spec"]["acme"].update(contact="ops@example.com")),
            ("a ClusterIssuer with a namespace", lambda d: d["metadata"].update(namespace="latch")),
        ],
        "ClusterIssuer/selfSigned": [
            ("a selfSigned issuer with an unknown field", lambda d: d["spec"]["selfSigned"].update(isCA=True)),
            ("a CA issuer without secretName", lambda d: d.update(spec={"ca": {}})),
        ],
    }
    problems = []
    for key, cases in mutations.items():
        if key not in sample:
            problems.append(f"no rendered {key} to mutate")
            continue
        validator = validators[key.split("/")[0]]
        for label, mutate in cases:
            doc = copy.deepcopy(sample[key])
            mutate(doc)
            if not schema_errors(validator, doc):
                problems.append(f"{key} schema accepts {label}")
    # The issuer schema serves Issuer too: a namespaced Issuer with the same spec is valid.
    for key in ("ClusterIssuer/acme", "ClusterIssuer/selfSigned"):
        if key in sample:
            issuer = copy.deepcopy(sample[key])
            issuer["kind"] = "Issuer"
            issuer["metadata"]["namespace"] = "latch"
            problems += [f"the issuer schema rejects a valid Issuer: {e}"
                         for e in schema_errors(validators["Issuer"], issuer)]
    return problems


# --------------------------------------------------------------------------- consistency


@dataclass
class Overlay:
    name: str
    docs: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.of_kind(kind) if name_of(d) == name), None)


def selector_matches(match_labels: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in match_labels.items())


def served_components(app: dict, spin: SpinManifest) -> set[str]:
    return set(app["spec"].get("components") or spin.components)


def host_covered(host: str, names: list[str]) -> bool:
    """Is `host` one of a certificate's dnsNames, or matched by a `*.` wildcard of it?"""
    return host in names or any(n.startswith("*.") and "." in host and host.split(".", 1)[1] == n[2:]
                                for n in names)


def consistency_problems(overlay: Overlay, spin: SpinManifest, secret_template: dict) -> dict[str, list[str]]:
    """Every check, by label; an empty list means it passed."""
    apps = overlay.of_kind("SpinApp")
    hpas = overlay.of_kind("HorizontalPodAutoscaler")
    results: dict[str, list[str]] = {}

    def add(label: str, problems: list[str]) -> None:
        results[label] = problems

    add("has at least one SpinApp", [] if apps else ["no SpinApp rendered"])

    # One namespace for everything namespaced.
    namespaces = {d["metadata"].get("namespace") for d in overlay.docs if d.get("kind") not in CLUSTER_SCOPED}
    ns_objects = [name_of(d) for d in overlay.of_kind("Namespace")]
    problems = []
    if len(namespaces) != 1 or None in namespaces:
        problems.append(f"objects span namespaces {sorted(map(str, namespaces))}")
    elif ns_objects and ns_objects != list(namespaces):
        problems.append(f"Namespace object {ns_objects} differs from the objects' namespace {namespaces}")
    namespace = next(iter(namespaces)) if len(namespaces) == 1 else None
    # kustomize's `namespace:` stamps custom kinds it does not know are cluster-scoped
    # (a ClusterIssuer): the API server would ignore it, but it shows the overlay is wrong.
    for doc in overlay.docs:
        if doc.get("kind") in CLUSTER_SCOPED and doc.get("metadata", {}).get("namespace"):
            problems.append(f"{ref(doc)} is cluster-scoped but carries namespace {doc['metadata']['namespace']!r}")
    add("every object in one namespace", problems)

    # HPA -> the Deployment the operator creates (named after the SpinApp).
    problems = []
    app_names = {name_of(a) for a in apps}
    targeted: dict[str, int] = {}
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        if (target.get("apiVersion"), target.get("kind")) != ("apps/v1", "Deployment"):
            problems.append(f"{ref(hpa)} targets {target.get('apiVersion')}/{target.get('kind')}, "
                            "not the operator's apps/v1 Deployment")
        if target.get("name") not in app_names:
            problems.append(f"{ref(hpa)} targets Deployment {target.get('name')!r}, but the SpinApps "
                            f"here are {sorted(app_names)} (the operator names each Deployment after its SpinApp)")
        targeted[target.get("name")] = targeted.get(target.get("name"), 0) + 1
        spec = hpa["spec"]
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            problems.append(f"{ref(hpa)} has minReplicas {spec.get('minReplicas')} / maxReplicas {spec['maxReplicas']}")
    for app in apps:
        autoscaled = app["spec"].get("enableAutoscaling") is True
        count = targeted.get(name_of(app), 0)
        if autoscaled and count != 1:
            problems.append(f"{ref(app)} has enableAutoscaling but {count} HPAs target its Deployment")
        if not autoscaled and count:
            problems.append(f"{ref(app)} is targeted by an HPA without enableAutoscaling: "
                            "the operator would fight the HPA over the replica count")
    add("each HPA scales the Deployment of one autoscaled SpinApp", problems)

    # HPA memory target against the pod's idle memory (the old service's fault 11).
    problems = []
    for hpa in hpas:
        app = overlay.find("SpinApp", hpa["spec"]["scaleTargetRef"].get("name"))
        if app is None:
            continue
        request = app["spec"].get("resources", {}).get("requests", {}).get("memory")
        idle = app["metadata"].get("annotations", {}).get(IDLE_MEMORY_ANNOTATION)
        memory_targets = [m["resource"]["target"].get("averageUtilization") for m in hpa["spec"].get("metrics", [])
                          if m.get("type") == "Resource" and m["resource"]["name"] == "memory"]
        if not memory_targets:
            continue
        if request is None or idle is None:
            problems.append(f"{ref(app)} needs a memory request and the {IDLE_MEMORY_ANNOTATION} annotation "
                            "for its HPA memory target to be checked")
            continue
        idle_pct = 100.0 * quantity(idle) / quantity(request)
        for target in memory_targets:
            if idle_pct > target - IDLE_MEMORY_MARGIN_POINTS:
                problems.append(f"{ref(app)} idles at {idle_pct:.0f}% of its {request} memory request, not at "
                                f"least {IDLE_MEMORY_MARGIN_POINTS} points under the HPA target {target}%: "
                                "it would never scale back down")
    add("HPA memory target sits well above idle memory", problems)

    # The memory limit against the most one pod can take on under Spin: idle, one
    # argon2id hash per CPU of the limit (hashes run in an instance that ends with them,
    # and cannot yield), and Spin's whole instance pool in flight.
    problems = []
    for app in apps:
        notes = app["metadata"].get("annotations", {})
        limits = app["spec"].get("resources", {}).get("limits", {})
        wanted = (IDLE_MEMORY_ANNOTATION, HASH_MEMORY_ANNOTATION, INSTANCE_MEMORY_ANNOTATION,
                  MAX_INSTANCES_ANNOTATION)
        missing = [a for a in wanted if a not in notes]
        if missing or "memory" not in limits or "cpu" not in limits:
            problems.append(f"{ref(app)} needs a cpu and memory limit and the annotations {missing or list(wanted)} "
                            "to check that a burst cannot push a pod past its memory limit")
            continue
        hash_threads = max(1, math.ceil(quantity(limits["cpu"])))
        worst = (quantity(notes[IDLE_MEMORY_ANNOTATION])
                 + hash_threads * quantity(notes[HASH_MEMORY_ANNOTATION])
                 + int(notes[MAX_INSTANCES_ANNOTATION]) * quantity(notes[INSTANCE_MEMORY_ANNOTATION]))
        if quantity(limits["memory"]) < worst:
            problems.append(f"{ref(app)} limits memory to {limits['memory']}, under the {worst / 2**20:.0f} MiB "
                            "Spin can use at once (idle + a hash per CPU + its whole instance pool)")
    add("memory limit covers the most Spin runs at once", problems)

    # requests <= limits.
    problems = []
    for app in apps:
        resources = app["spec"].get("resources", {})
        for res, limit in resources.get("limits", {}).items():
            req = resources.get("requests", {}).get(res)
            if req is not None and quantity(req) > quantity(limit):
                problems.append(f"{ref(app)} requests {res} {req} above its limit {limit}")
        for res in ("cpu", "memory"):
            if res not in resources.get("requests", {}):
                problems.append(f"{ref(app)} has no {res} request: HPA utilisation is relative to it")
    add("resource requests exist and stay within limits", problems)

    # Variables against spin.toml.
    problems = []
    for app in apps:
        names = [v["name"] for v in app["spec"].get("variables", [])]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"{ref(app)} sets {duplicates} more than once")
        unknown = sorted(set(names) - set(spin.variables))
        if unknown:
            problems.append(f"{ref(app)} sets {unknown}, which spin.toml [variables] does not declare")
        missing_required = sorted(spin.required_variables - set(names))
        if missing_required:
            problems.append(f"{ref(app)} leaves required variables {missing_required} unset")
        unset = sorted(set(spin.variables) - set(names))
        if unset:
            problems.append(f"{ref(app)} does not bind {unset}: the pods would run on spin.toml's development "
                            "defaults for them (bind every variable, or remove it from spin.toml)")
    add("SpinApp variables match spin.toml [variables]", problems)

    # ConfigMap / Secret keys.
    problems = []
    template_name = name_of(secret_template)
    template_keys = set((secret_template.get("stringData") or {}) | (secret_template.get("data") or {}))
    used_secret_keys: set[str] = set()
    for app in apps:
        for var in app["spec"].get("variables", []):
            source = var.get("valueFrom", {})
            if "configMapKeyRef" in source:
                cm_ref = source["configMapKeyRef"]
                cm = overlay.find("ConfigMap", cm_ref["name"])
                if cm is None:
                    problems.append(f"{ref(app)} variable {var['name']} reads ConfigMap {cm_ref['name']!r}, "
                                    "which this overlay does not render")
                elif cm_ref["key"] not in (cm.get("data") or {}):
                    problems.append(f"{ref(app)} variable {var['name']} reads key {cm_ref['key']!r}, "
                                    f"missing from ConfigMap {cm_ref['name']}")
                if var["name"] in spin.secret_variables:
                    problems.append(f"{ref(app)} reads secret variable {var['name']} from a ConfigMap")
            elif "secretKeyRef" in source:
                s_ref = source["secretKeyRef"]
                used_secret_keys.add(s_ref["key"])
                if s_ref["name"] != template_name:
                    problems.append(f"{ref(app)} variable {var['name']} reads Secret {s_ref['name']!r}; "
                                    f"the template documents {template_name!r}")
                elif s_ref["key"] not in template_keys:
                    problems.append(f"{ref(app)} variable {var['name']} reads key {s_ref['key']!r}, "
                                    "missing from k8s/secret.yaml.template")
            elif var["name"] in spin.secret_variables:
                problems.append(f"{ref(app)} sets secret variable {var['name']} as a literal value")
    app_config_maps = {v["valueFrom"]["configMapKeyRef"]["name"] for a in apps for v in a["spec"].get("variables", [])
                       if "configMapKeyRef" in v.get("valueFrom", {})}
    for cm in overlay.of_kind("ConfigMap"):
        stray = sorted(set(cm.get("data") or {}) - set(spin.variables))
        if name_of(cm) in app_config_maps and stray:
            problems.append(f"ConfigMap {name_of(cm)} carries {stray}, which are not spin.toml variables")
    unused = sorted(template_keys - used_secret_keys)
    if unused and apps:
        problems.append(f"k8s/secret.yaml.template documents keys no SpinApp reads: {unused}")
    add("ConfigMap and Secret references resolve to existing keys", problems)

    # Executor, service account, telemetry.
    problems = []
    executors = {name_of(e): e for e in overlay.of_kind("SpinAppExecutor")}
    for app in apps:
        if app["spec"]["executor"] not in executors:
            problems.append(f"{ref(app)} uses executor {app['spec']['executor']!r}, not rendered in its namespace "
                            "(the operator looks executors up in the SpinApp's namespace)")
        account = app["spec"].get("serviceAccountName")
        if account:
            sa = overlay.find("ServiceAccount", account)
            if sa is None:
                problems.append(f"{ref(app)} runs as ServiceAccount {account!r}, which is not rendered")
            elif sa.get("automountServiceAccountToken") is not False:
                problems.append(f"ServiceAccount {account} mounts an API token into pods that never use it")
    for executor in executors.values():
        config = executor["spec"].get("deploymentConfig", {})
        if config.get("installDefaultCACerts") is not True and not config.get("caCertSecret"):
            problems.append(f"{ref(executor)} gives wasm pods no CA bundle: outbound HTTPS would fail")
        endpoint = config.get("otel", {}).get("exporter_otlp_endpoint")
        if endpoint:
            url = urlparse(endpoint)
            allowed = {"otel-collector", f"otel-collector.{namespace}", f"otel-collector.{namespace}.svc",
                       f"otel-collector.{namespace}.svc.cluster.local"}
            if url.hostname not in allowed:
                problems.append(f"{ref(executor)} sends telemetry to {url.hostname!r}, not to the otel-collector "
                                f"Service of namespace {namespace!r}")
            if url.port not in (4317, 4318):
                problems.append(f"{ref(executor)} sends telemetry to port {url.port}, not OTLP 4317/4318")
    add("executor, service account and telemetry endpoint resolve", problems)

    # Probes and the components that answer them.
    problems = []
    route_of = {component: route for route, component in spin.routes.items()}
    expected = {"readiness": route_of.get("ready"), "liveness": route_of.get("health")}
    database_timeout = None
    for cm in overlay.of_kind("ConfigMap"):
        if name_of(cm) in app_config_maps and "database_timeout_ms" in (cm.get("data") or {}):
            database_timeout = int(cm["data"]["database_timeout_ms"])
    for app in apps:
        checks = app["spec"].get("checks", {})
        for probe, path in expected.items():
            got = checks.get(probe, {}).get("httpGet", {}).get("path")
            if got != path:
                problems.append(f"{ref(app)} {probe} probe calls {got!r}, expected {path!r} (spin.toml)")
        missing = sorted(set(PROBE_COMPONENTS) - served_components(app, spin))
        if missing:
            problems.append(f"{ref(app)} does not run {missing}, which answer its probes: pods would never be ready")
        timeout_s = checks.get("readiness", {}).get("timeoutSeconds", 1)
        if database_timeout is not None and timeout_s * 1000 < database_timeout + READINESS_DB_MARGIN_MS:
            problems.append(f"{ref(app)} readiness timeout {timeout_s}s does not outlast database_timeout_ms "
                            f"{database_timeout} by {READINESS_DB_MARGIN_MS} ms")
    add("probes hit /ready and /health, served by every pod", problems)

    # Components (the split) against spin.toml routes.
    problems = []
    serving: dict[str, list[str]] = {}
    for app in apps:
        listed = app["spec"].get("components")
        if listed:
            unknown = sorted(set(listed) - spin.components)
            if unknown:
                problems.append(f"{ref(app)} lists components {unknown}, not in spin.toml")
        for component in served_components(app, spin):
            serving.setdefault(component, []).append(name_of(app))
    for route, component in sorted(spin.routes.items()):
        owners = serving.get(component, [])
        if not owners:
            problems.append(f"route {route} (component {component}) is served by no SpinApp")
        elif len(owners) > 1 and component not in PROBE_COMPONENTS:
            problems.append(f"route {route} (component {component}) is served by {owners}: "
                            "the Ingress can send it to only one")
    add("SpinApp components exist and cover every spin.toml route once", problems)

    # Service chaining stays inside one SpinApp: the shim refuses to start an app
    # whose selected components call a component it does not run.
    problems = []
    for app in apps:
        served = served_components(app, spin)
        for caller in sorted(served):
            missing = sorted(spin.chains.get(caller, set()) - served)
            if missing:
                problems.append(f"{ref(app)} runs {caller}, which calls {missing} through "
                                "service chaining, but does not run them")
    for component in sorted(spin.private):
        if not serving.get(component):
            problems.append(f"private component {component} is run by no SpinApp")
    add("service-chained components run beside their callers", problems)

    # Ingress: every public route, to the SpinApp that serves it, nothing else.
    problems = []
    ingresses = overlay.of_kind("Ingress")
    wanted: dict[tuple[str, str], set[str]] = {}
    for r, c in spin.routes.items():
        if r not in PRIVATE_ROUTES:
            wanted.setdefault(ingress_rule_for_route(r), set()).add(c)
    seen: dict[tuple[str, str], str] = {}
    if not ingresses:
        problems.append("no Ingress rendered")
    rendered_keys = [(p["path"], p["pathType"]) for ing in ingresses for rule in ing["spec"].get("rules", [])
                     for p in rule.get("http", {}).get("paths", [])]
    for key in sorted({k for k in rendered_keys if rendered_keys.count(k) > 1}):
        problems.append(f"{key[1]} {key[0]} is routed more than once: nginx would pick one of them")
    for ing in ingresses:
        annotations = ing["metadata"].get("annotations", {})
        if ing["spec"].get("ingressClassName") != "nginx":
            problems.append(f"{ref(ing)} has ingressClassName {ing['spec'].get('ingressClassName')!r}, not nginx")
        for key in annotations:
            if key.endswith(("/rewrite-target", "/use-regex", "/server-snippet", "/configuration-snippet")):
                problems.append(f"{ref(ing)} sets {key}: routes must reach Spin unchanged and unscripted")
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                key = (path["path"], path["pathType"])
                backend = path["backend"]["service"]
                seen[key] = backend["name"]
                if key not in wanted:
                    problems.append(f"{ref(ing)} exposes {key[1]} {key[0]}, which is not a public spin.toml route")
                    continue
                app = overlay.find("SpinApp", backend["name"])
                if backend.get("port", {}).get("number") != 80:
                    problems.append(f"{ref(ing)} {key[0]} goes to port {backend.get('port')}, "
                                    "the operator's Service listens on 80")
                if app is None:
                    problems.append(f"{ref(ing)} {key[0]} goes to Service {backend['name']!r}, "
                                    "which no SpinApp here creates")
                    continue
                carried = set(wanted[key])
                # Prefix P also matches P itself: it carries an Exact route P no rule names.
                if key[1] == "Prefix" and (key[0], "Exact") not in rendered_keys:
                    carried |= wanted.get((key[0], "Exact"), set())
                missing = sorted(carried - served_components(app, spin))
                if missing:
                    problems.append(f"{ref(ing)} {key[0]} goes to {backend['name']}, which does not run "
                                    f"component(s) {missing}")
    for key in sorted(set(wanted) - set(seen)):
        if key[1] == "Exact" and (key[0], "Prefix") in seen:
            continue  # carried by the Prefix rule on the same path
        problems.append(f"public route {key[1]} {key[0]} is not routed by any Ingress")
    add("Ingress routes every public route, exactly, to its SpinApp", problems)

    # The admin API only behind a source allow-list, on an Ingress of its own: the
    # allow-list annotation applies to every path of its Ingress.
    problems = []
    for ing in ingresses:
        paths = [p["path"] for rule in ing["spec"].get("rules", []) for p in rule.get("http", {}).get("paths", [])]
        admin = [p for p in paths if (p + "/").startswith(ADMIN_ROUTE_PREFIX)]
        if not admin:
            continue
        if len(admin) != len(paths):
            problems.append(f"{ref(ing)} routes {admin} beside public paths: give /admin an Ingress of its own")
        value = ing["metadata"].get("annotations", {}).get(ADMIN_ALLOWLIST_ANNOTATION, "")
        ranges = [r.strip() for r in value.split(",") if r.strip()]
        if not ranges:
            problems.append(f"{ref(ing)} routes {admin} without {ADMIN_ALLOWLIST_ANNOTATION}: "
                            "the admin API would be open to every address")
        for r in ranges:
            try:
                network = ipaddress.ip_network(r, strict=False)
            except ValueError:
                problems.append(f"{ref(ing)} allow-list entry {r!r} is not an address or CIDR range")
                continue
            if network.prefixlen == 0:
                problems.append(f"{ref(ing)} allow-list entry {r} admits every address")
    add("admin routes only through an Ingress with a source allow-list", problems)

    # TLS at the edge: every Ingress host over HTTPS with a certificate cert-manager
    # keeps, and plain HTTP redirected.
    problems = []
    certificates = overlay.of_kind("Certificate")
    for ing in ingresses:
        ns = ing["metadata"].get("namespace")
        annotations = ing["metadata"].get("annotations", {})
        rule_hosts = [rule.get("host") for rule in ing["spec"].get("rules", [])]
        if not all(rule_hosts):
            problems.append(f"{ref(ing)} has a rule without a host: nginx picks a certificate by host name (SNI), "
                            "a host-less rule would be served with its self-signed default certificate")
        tls = ing["spec"].get("tls") or []
        if not tls:
            problems.append(f"{ref(ing)} has no `tls`: it would serve the API over plain HTTP")
        tls_hosts = [h for entry in tls for h in entry.get("hosts", [])]
        uncovered = sorted(set(filter(None, rule_hosts)) - set(tls_hosts))
        if tls and uncovered:
            problems.append(f"{ref(ing)} serves {uncovered} without TLS (tls hosts {tls_hosts})")
        stray = sorted(set(tls_hosts) - set(rule_hosts))
        if stray:
            problems.append(f"{ref(ing)} lists tls hosts {stray} that no rule serves")
        shim = [a for a in CERT_MANAGER_SHIM_ANNOTATIONS if a in annotations]
        for entry in tls:
            secret = entry.get("secretName")
            if not secret:
                problems.append(f"{ref(ing)} has a tls entry without secretName: nginx would use its default certificate")
                continue
            producers = [c for c in certificates
                         if c["spec"].get("secretName") == secret and c["metadata"].get("namespace") == ns]
            if producers and shim:
                problems.append(f"{ref(ing)} has {shim} and Certificate {name_of(producers[0])} also writes Secret "
                                f"{secret}: two owners would fight over it (keep one)")
            elif len(producers) > 1:
                problems.append(f"Certificates {[name_of(c) for c in producers]} all write Secret {secret}")
            elif producers:
                names = producers[0]["spec"].get("dnsNames", [])
                missing = [h for h in entry.get("hosts", []) if not host_covered(h, names)]
                if missing:
                    problems.append(f"{ref(producers[0])} (Secret {secret}) does not cover {missing} "
                                    f"of {ref(ing)} (its dnsNames: {names})")
            elif not shim:
                problems.append(f"{ref(ing)} tls Secret {secret} is written by no Certificate and no cert-manager "
                                "annotation: nginx would serve its self-signed default certificate")
        force = annotations.get(f"{NGINX_ANNOTATION}force-ssl-redirect")
        plain = annotations.get(f"{NGINX_ANNOTATION}ssl-redirect")
        if force != "true" or plain == "false":
            problems.append(f"{ref(ing)} does not redirect HTTP to HTTPS (force-ssl-redirect {force!r}, "
                            f"ssl-redirect {plain!r}; want \"true\" for both)")
    add("Ingress serves HTTPS only: tls for every host from cert-manager, HTTP redirected", problems)

    # Each Certificate's issuer is rendered with it (an Issuer in its namespace, or a
    # ClusterIssuer): a missing issuer leaves the Certificate unissued and nginx on its
    # default certificate. Issuers of other API groups (external issuers) are not ours.
    problems = []
    for cert in certificates:
        issuer_ref = cert["spec"].get("issuerRef", {})
        if issuer_ref.get("group", "cert-manager.io") != "cert-manager.io":
            continue
        kind = issuer_ref.get("kind", "Issuer")
        found = [i for i in overlay.of_kind(kind) if name_of(i) == issuer_ref.get("name")
                 and (kind == "ClusterIssuer" or i["metadata"].get("namespace") == cert["metadata"].get("namespace"))]
        if not found:
            problems.append(f"{ref(cert)} is issued by {kind} {issuer_ref.get('name')!r}, which this overlay "
                            "does not render")
    add("Certificates name an issuer rendered in the overlay", problems)

    # NetworkPolicy and PodDisruptionBudget select the right pods.
    problems = []
    policies = overlay.of_kind("NetworkPolicy")
    for app in apps:
        labels = app["spec"].get("podLabels", {})
        if not any(selector_matches(p["spec"]["podSelector"].get("matchLabels", {}), labels) for p in policies):
            problems.append(f"no NetworkPolicy selects the pods of {ref(app)}")
        budgets = [b for b in overlay.of_kind("PodDisruptionBudget")
                   if selector_matches(b["spec"]["selector"].get("matchLabels", {}), labels)]
        if len(budgets) != 1:
            problems.append(f"{len(budgets)} PodDisruptionBudgets select the pods of {ref(app)}, expected 1")
            continue
        budget = budgets[0]
        others = [name_of(a) for a in apps if a is not app
                  and selector_matches(budget["spec"]["selector"].get("matchLabels", {}), a["spec"].get("podLabels", {}))]
        if others:
            problems.append(f"{ref(budget)} also selects the pods of {others}")
        hpa = next((h for h in hpas if h["spec"]["scaleTargetRef"].get("name") == name_of(app)), None)
        floor = hpa["spec"].get("minReplicas", 1) if hpa else app["spec"].get("replicas", 1)
        min_available = budget["spec"].get("minAvailable")
        if isinstance(min_available, int) and min_available >= floor:
            problems.append(f"{ref(budget)} minAvailable {min_available} with {floor} replica(s) at the floor "
                            "allows no disruption: node drains would block forever")
    # The flow requirements below apply to the policies that select Latch's pods (other
    # components, like the collector, bring policies of their own).
    app_policies = [p for p in policies if any(
        selector_matches(p["spec"]["podSelector"].get("matchLabels", {}), a["spec"].get("podLabels", {}))
        for a in apps)]
    for policy in app_policies:
        types = policy["spec"].get("policyTypes", [])
        if sorted(types) != ["Egress", "Ingress"]:
            problems.append(f"{ref(policy)} restricts {types}, expected both Ingress and Egress")
        egress_ports = {p.get("port") for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}
        for needed in (53, 443):
            if needed not in egress_ports:
                problems.append(f"{ref(policy)} blocks egress port {needed}")
        for executor in executors.values():
            endpoint = executor["spec"].get("deploymentConfig", {}).get("otel", {}).get("exporter_otlp_endpoint")
            if not endpoint:
                continue
            port = urlparse(endpoint).port
            if port not in egress_ports:
                problems.append(f"{ref(policy)} blocks the telemetry port of {endpoint}")
            # When the collector is rendered too, the rule for its port must select its pods.
            collector = overlay.find("Deployment", "otel-collector")
            if collector is not None:
                pod_labels = collector["spec"]["template"]["metadata"].get("labels", {})
                peers = [peer for rule in policy["spec"].get("egress", [])
                         if port in {p.get("port") for p in rule.get("ports", [])}
                         for peer in rule.get("to", [])]
                if not any("podSelector" in peer and "namespaceSelector" not in peer
                           and selector_matches(peer["podSelector"].get("matchLabels", {}), pod_labels)
                           for peer in peers):
                    problems.append(f"{ref(policy)} allows port {port} to no peer that selects the collector's "
                                    f"pods (labels {pod_labels})")
    # And the other direction: a policy guarding the collector must let Latch's pods in.
    collector = overlay.find("Deployment", "otel-collector")
    if collector is not None:
        collector_labels = collector["spec"]["template"]["metadata"].get("labels", {})
        for policy in policies:
            if policy in app_policies or "Ingress" not in policy["spec"].get("policyTypes", []):
                continue
            if not selector_matches(policy["spec"]["podSelector"].get("matchLabels", {}), collector_labels):
                continue
            for app in apps:
                labels = app["spec"].get("podLabels", {})
                admitted = any(
                    {4317, 4318} & {p.get("port") for p in rule.get("ports", [])}
                    and any("podSelector" in peer and "namespaceSelector" not in peer
                            and selector_matches(peer["podSelector"].get("matchLabels", {}), labels)
                            for peer in rule.get("from", []))
                    for rule in policy["spec"].get("ingress", []))
                if not admitted:
                    problems.append(f"{ref(policy)} does not admit OTLP from the pods of {ref(app)}")
    add("NetworkPolicy and PodDisruptionBudget select each SpinApp's pods", problems)
    return results


def consistency_self_test(overlay: Overlay, spin: SpinManifest, template: dict) -> list[str]:
    """Each known-bad mutation of a passing overlay must make the check aimed at it fail."""

    def first(kind: str):
        return lambda docs: next(d for d in docs if d.get("kind") == kind)

    def is_admin(ingress: dict) -> bool:
        return any(p["path"].startswith(ADMIN_ROUTE_PREFIX) for rule in ingress["spec"].get("rules", [])
                   for p in rule.get("http", {}).get("paths", []))

    def admin_ingress(docs: list[dict]) -> dict:
        return next(d for d in docs if d.get("kind") == "Ingress" and is_admin(d))

    def public_ingress(docs: list[dict]) -> dict:
        return next(d for d in docs if d.get("kind") == "Ingress" and not is_admin(d))

    def misroute_admin(docs: list[dict]) -> None:
        # To a SpinApp without admin-user (split), else to a Service no SpinApp creates.
        others = [name_of(a) for a in docs if a.get("kind") == "SpinApp"
                  and "admin-user" not in (a["spec"].get("components") or spin.components)]
        for path in admin_ingress(docs)["spec"]["rules"][0]["http"]["paths"]:
            if path["pathType"] == "Prefix":
                path["backend"]["service"]["name"] = others[0] if others else "latch-old"

    mutations = [
        ("an HPA aimed at a Deployment no SpinApp creates", "each HPA scales",
         lambda docs: first("HorizontalPodAutoscaler")(docs)["spec"]["scaleTargetRef"].update(name="latch-old")),
        ("a variable spin.toml does not declare", "SpinApp variables match",
         lambda docs: first("SpinApp")(docs)["spec"]["variables"].append({"name": "jwt_secret", "value": "x"})),
        ("a ConfigMap key that does not exist", "ConfigMap and Secret references",
         lambda docs: next(v for v in first("SpinApp")(docs)["spec"]["variables"]
                           if "configMapKeyRef" in v.get("valueFrom", {}))["valueFrom"]["configMapKeyRef"].update(key="nope")),
        ("a memory target under the idle pod's share of its request", "HPA memory target",
         lambda docs: first("HorizontalPodAutoscaler")(docs)["spec"]["metrics"].append(
             {"type": "Resource", "resource": {"name": "memory",
                                               "target": {"type": "Utilization", "averageUtilization": 50}}})),
        ("a memory limit Spin's instance pool can outgrow", "memory limit covers",
         lambda docs: first("SpinApp")(docs)["spec"]["resources"]["limits"].update(memory="512Mi")),
        ("a PDB of minAvailable 1 at one replica", "NetworkPolicy and PodDisruptionBudget",
         lambda docs: first("PodDisruptionBudget")(docs)["spec"].update(minAvailable=1)),
        ("a SpinApp that runs sign-in without the password hasher it calls", "service-chained components",
         lambda docs: first("SpinApp")(docs)["spec"].update(components=["health", "ready", "signin"])),
        ("an Ingress path that is not a route", "Ingress routes",
         lambda docs: first("Ingress")(docs)["spec"]["rules"][0]["http"]["paths"].append(
             {"path": "/metrics", "pathType": "Exact",
              "backend": {"service": {"name": name_of(first("SpinApp")(docs)), "port": {"number": 80}}}})),
        ("a public route beside the admin paths", "admin routes only through",
         lambda docs: admin_ingress(docs)["spec"]["rules"][0]["http"]["paths"].append(
             public_ingress(docs)["spec"]["rules"][0]["http"]["paths"].pop(0))),
        ("an admin Ingress without its source allow-list", "admin routes only through",
         lambda docs: admin_ingress(docs)["metadata"]["annotations"].pop(ADMIN_ALLOWLIST_ANNOTATION)),
        ("an admin allow-list of 0.0.0.0/0", "admin routes only through",
         lambda docs: admin_ingress(docs)["metadata"]["annotations"].update(
             {ADMIN_ALLOWLIST_ANNOTATION: "10.0.0.0/8,0.0.0.0/0"})),
        ("/admin/users/:id sent to a SpinApp that does not run it", "Ingress routes", misroute_admin),
        ("a NetworkPolicy whose OTLP rule misses the collector's pods", "NetworkPolicy and PodDisruptionBudget",
         lambda docs: [peer["podSelector"].update(matchLabels={"app": "collector"})
                       for rule in first("NetworkPolicy")(docs)["spec"]["egress"]
                       if 4318 in {p.get("port") for p in rule.get("ports", [])}
                       for peer in rule["to"] if "podSelector" in peer]),
        ("a readiness timeout shorter than a database request", "probes hit",
         lambda docs: first("SpinApp")(docs)["spec"]["checks"]["readiness"].update(timeoutSeconds=1)),
        ("an Ingress without tls", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["spec"].pop("tls")),
        ("an Ingress that does not force the HTTPS redirect", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["metadata"]["annotations"].pop(f"{NGINX_ANNOTATION}force-ssl-redirect")),
        ("an Ingress with ssl-redirect off", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["metadata"]["annotations"].update(
             {f"{NGINX_ANNOTATION}ssl-redirect": "false"})),
        ("a rule without a host", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["spec"]["rules"][0].pop("host")),
        ("a rule host the tls entry does not list", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["spec"]["rules"][0].update(host="other.example.net")),
        ("a tls Secret no Certificate writes", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["spec"]["tls"][0].update(secretName="latch-tls-old")),
        ("a Certificate that does not cover the host", "Ingress serves HTTPS only",
         lambda docs: first("Certificate")(docs)["spec"].update(dnsNames=["elsewhere.example.net"])),
        ("a Certificate and the ingress-shim annotation for one Secret", "Ingress serves HTTPS only",
         lambda docs: first("Ingress")(docs)["metadata"]["annotations"].update(
             {"cert-manager.io/cluster-issuer": "letsencrypt-prod"})),
        ("a Certificate whose issuer is not rendered", "Certificates name an issuer",
         lambda docs: first("Certificate")(docs)["spec"]["issuerRef"].update(name="letsencrypt-staging")),
        ("a ClusterIssuer stamped with a namespace", "every object in one namespace",
         lambda docs: first("ClusterIssuer")(docs)["metadata"].update(namespace="latch")),
    ]
    problems = []
    has_collector = overlay.find("Deployment", "otel-collector") is not None
    for label, check, mutate in mutations:
        if "collector" in label and not has_collector:
            continue  # nothing to miss when the overlay renders no collector
        docs = copy.deepcopy(overlay.docs)
        mutate(docs)
        results = consistency_problems(Overlay(overlay.name, docs), spin, template)
        if not any(problems_ for name, problems_ in results.items() if name.startswith(check)):
            problems.append(f"the check '{check}...' accepts {label}")
    return problems


# --------------------------------------------------------------------------- commands


def rendered_overlays(rendered: Path) -> list[Overlay]:
    files = sorted(rendered.glob("*.yaml"))
    if not files:
        sys.exit(f"no rendered overlays in {rendered}")
    return [Overlay(f.stem, load_docs(f)) for f in files]


def cmd_split(args: argparse.Namespace) -> int:
    out = Path(args.out)
    count = 0
    for overlay in rendered_overlays(Path(args.rendered)):
        target = out / overlay.name
        target.mkdir(parents=True, exist_ok=True)
        for index, doc in enumerate(d for d in overlay.docs if not is_custom(d)):
            path = target / f"{index:02d}-{doc['kind'].lower()}-{name_of(doc)}.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
            count += 1
    template = load_docs(Path(args.secret_template))
    (out / "secret-template").mkdir(parents=True, exist_ok=True)
    (out / "secret-template" / "secret.yaml").write_text(yaml.safe_dump(template[0], sort_keys=False), encoding="utf-8")
    print(f"wrote {count + 1} built-in objects under {out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    repo = Path(args.repo)
    spin = SpinManifest.load(repo / "spin.toml")
    validators = schema_validators(repo / "k8s" / "schemas")
    template_docs = load_docs(repo / "k8s" / "secret.yaml.template")
    if len(template_docs) != 1 or template_docs[0].get("kind") != "Secret":
        sys.exit("k8s/secret.yaml.template must hold exactly one Secret")
    template = template_docs[0]
    report = Report()

    overlays = rendered_overlays(Path(args.rendered))
    samples: dict[str, dict] = {}
    for overlay in overlays:
        problems = []
        for doc in overlay.docs:
            kind = doc.get("kind")
            if is_custom(doc):
                if kind not in validators:
                    problems.append(f"{ref(doc)}: no schema for custom kind {kind}")
                    continue
                samples.setdefault(sample_key(doc), doc)
                problems += [f"{ref(doc)} {e}" for e in schema_errors(validators[kind], doc)]
        report.check(f"[{overlay.name}] custom resources (SpinApp, cert-manager) match k8s/schemas", problems)
    report.check("schemas reject known-bad SpinApp, SpinAppExecutor, Certificate and issuer objects",
                 schema_self_test(validators, samples))

    for overlay in overlays:
        for label, problems in consistency_problems(overlay, spin, template).items():
            report.check(f"[{overlay.name}] {label}", problems)
    # The mutation test runs on every overlay: each has a different shape (split has two
    # SpinApps), and a check that only fires on one shape is a weak check.
    for overlay in overlays:
        report.check(f"[{overlay.name}] the checks reject known-bad mutations",
                     consistency_self_test(overlay, spin, template))

    print(f"k8s manifests: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    split = sub.add_parser("split", help="write built-in objects one per file")
    split.add_argument("--rendered", required=True, help="directory of <overlay>.yaml renders")
    split.add_argument("--secret-template", required=True)
    split.add_argument("--out", required=True)
    split.set_defaults(func=cmd_split)
    check = sub.add_parser("check", help="schema and consistency checks")
    check.add_argument("--rendered", required=True, help="directory of <overlay>.yaml renders")
    check.add_argument("--repo", required=True, help="repository root (spin.toml, k8s/)")
    check.set_defaults(func=cmd_check)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
