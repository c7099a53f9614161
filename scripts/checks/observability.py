#!/usr/bin/env python3
"""Checks of Latch's observability assets (dashboards, alert rules, collector).

Used by scripts/checks/observability.sh (static, no cluster, no data) and
scripts/checks/observability-live.sh (every service query against real data).

  observability.py static --prometheus URL   dashboards, rules, collector; every PromQL
                                             query parsed by the Prometheus at URL
  observability.py live --prometheus URL     every non-Kubernetes query must return data
        [--allow-missing-label LABEL ...]    (and every label it relies on must exist)
  observability.py queries [--all]           print the queries (JSON lines)

Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASH_DIR = ROOT / "dashboards"
ALERT_DIR = DASH_DIR / "alerts"
TEST_DIR = ALERT_DIR / "tests"
COLLECTOR_DIR = ROOT / "k8s" / "collector"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

DS_PLUGINS = {"prometheus", "loki", "tempo"}

# Values of Grafana's built-in variables used when a query is sent to Prometheus.
BUILTIN_VARS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

EVENTS = {"signup", "signin", "refresh", "refresh_reuse_detected", "signout", "password_change", "lockout",
          "session_revoked",
          # account recovery and email verification (issue 13)
          "recovery_requested", "password_reset", "verification_requested", "email_verified",
          # one line per email webhook delivery
          "email_delivery",
          # changes made through the admin API, with the acting admin's id (issue 15)
          "admin_user_updated", "admin_unlock", "admin_sessions_revoked",
          # the second factor (issue 14): TOTP enrolment, sign-in codes, recovery codes
          "mfa_enrolled", "mfa_verified", "mfa_failed", "mfa_removed", "recovery_code_used",
          "recovery_codes_regenerated"}
# "logged": an email_delivery in development without a webhook URL (the link was printed).
OUTCOMES = {"success", "failure", "denied", "logged"}
# Labels added by a query (label_replace) rather than stored.
SYNTHETIC_LABELS = {"backend", "component"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2"}
REGEX_META = set(".*+?[](){}^$\\")


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}")

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass
class Query:
    expr: str            # as written, with Grafana variables
    where: str           # dashboard / panel / target, or rule file / alert
    kubernetes: bool = False
    substituted: str = ""
    source: str = "panel"  # panel | variable | rule


# --------------------------------------------------------------------------------------------
# reference data: contract, Kubernetes allow-list, spin.toml


def read_table(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _origin, labels = line.split("\t")
        out[name] = {lbl for lbl in labels.split(",") if lbl}
    return out


def manifest() -> tuple[set[str], set[str]]:
    data = tomllib.loads((ROOT / "spin.toml").read_text())
    components = set(data.get("component", {}).keys())
    routes = {t["route"] for t in data.get("trigger", {}).get("http", []) if isinstance(t.get("route"), str)}
    return components, routes


def vocabulary() -> dict[str, set[str]]:
    components, routes = manifest()
    return {
        "span_kind": {"SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL", "SPAN_KIND_PRODUCER",
                      "SPAN_KIND_CONSUMER", "SPAN_KIND_UNSPECIFIED"},
        "status_code": {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"},
        "service_name": {"latch"},
        "app_id": {"latch"},
        "trigger_type": {"http"},
        "component_id": components,
        "http_route": routes,
        "event": EVENTS,
        "outcome": OUTCOMES,
        "db_system": {"sqlite"},
        "http_request_method": {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"},
        "phase": {"Pending", "Running", "Succeeded", "Failed", "Unknown"},
        "resource": {"cpu", "memory"},
        "condition": {"AbleToScale", "ScalingActive", "ScalingLimited", "true", "false", "unknown"},
        "status": {"true", "false", "unknown"},
        "deployment": {"latch"},
        "reason": {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                   "ContainerCreating", "OOMKilled", "Error", "Completed"},
    }


# --------------------------------------------------------------------------------------------
# PromQL helpers (regular expressions: enough for the query style used here)

STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SELECTOR_RE = re.compile(r'(?<![\w."])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}')
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING_RE = re.compile(r'\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)')
TOKEN_RE = re.compile(r'(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)')


def strip_strings(expr: str) -> str:
    return STRING_RE.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    s = strip_strings(expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = GROUPING_RE.sub(" ", s)
    names = set()
    for m in TOKEN_RE.finditer(s):
        tok = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # function or aggregation
        if tok.lower() in KEYWORDS:
            continue
        names.add(tok)
    return names


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, op, value)]) for every `metric{...}` in the query."""
    out = []
    for m in SELECTOR_RE.finditer(expr):
        name = m.group(1)
        if name.lower() in KEYWORDS:
            continue
        out.append((name, [(a, op, v) for a, op, v in MATCHER_RE.findall(m.group(2))]))
    return out


def grouping_labels(expr: str) -> set[str]:
    labels = set()
    for m in GROUPING_RE.finditer(strip_strings(expr)):
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
    return labels


def regex_alternatives(value: str) -> list[str] | None:
    """The literal alternatives of a regex like "a|b|c", or None if it is a real pattern."""
    alts = value.split("|")
    lits = []
    for alt in alts:
        if any(ch in REGEX_META for ch in alt):
            return None
        lits.append(alt)
    return lits


def requires_label(op: str, value: str) -> bool:
    """Whether a matcher can only match series that carry the label (non-empty)."""
    if "$" in value:
        return False
    if op == "=":
        return value != ""
    if op == "!=":
        return value == ""
    if op == "=~":
        try:
            return re.fullmatch(value, "") is None
        except re.error:
            return False
    return False


# --------------------------------------------------------------------------------------------
# Grafana dashboards


def var_ref_name(uid: str) -> str | None:
    m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid or "")
    return (m.group(1) or m.group(2)) if m else None


def iter_panels(panels):
    for p in panels:
        yield p
        if p.get("type") == "row":
            yield from iter_panels(p.get("panels", []))


def substitute(expr: str, variables: dict[str, str], where: str, fails: Failures) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        if name.isdigit():
            return m.group(0)  # a regex back-reference (label_replace), which Grafana leaves alone
        if name in BUILTIN_VARS:
            return BUILTIN_VARS[name]
        if name in variables:
            return variables[name]
        fails.add(where, f"unknown Grafana variable ${name} in {expr!r}")
        return m.group(0)

    return re.sub(r"\$\{(\w+)(:\w+)?\}|\$(\w+)", repl, expr)


def label_values_to_promql(definition: str) -> str | None:
    m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", definition)
    if m:
        return f"count by ({m.group(2)}) ({m.group(1)})"
    m = re.fullmatch(r"\s*query_result\((.+)\)\s*", definition)
    if m:
        return m.group(1)
    return None


def check_dashboards(fails: Failures) -> list[Query]:
    queries: list[Query] = []
    uids: dict[str, str] = {}
    files = sorted(DASH_DIR.glob("*.json"))
    if not files:
        fails.add("dashboards", "no dashboard JSON found")
    for path in files:
        name = path.name
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            fails.add(name, f"not valid JSON: {e}")
            continue
        for key in ("title", "uid", "panels", "templating", "schemaVersion"):
            if key not in dash:
                fails.add(name, f"missing top-level {key!r}")
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
            fails.add(name, "schemaVersion should be >= 36 (Grafana 9+)")
        if dash.get("id") is not None:
            fails.add(name, '"id" must be null so that imports do not collide')
        uid = dash.get("uid", "")
        if uid in uids:
            fails.add(name, f"uid {uid!r} also used by {uids[uid]}")
        uids[uid] = name
        is_k8s = "kubernetes" in dash.get("tags", [])

        # datasource variables
        templ = dash.get("templating", {}).get("list", [])
        ds_vars = {v["name"]: v.get("query") for v in templ if v.get("type") == "datasource"}
        if "prometheus" not in ds_vars.values():
            fails.add(name, "no datasource variable of type prometheus")
        for vname, plugin in ds_vars.items():
            if plugin not in DS_PLUGINS:
                fails.add(name, f"datasource variable {vname} has unexpected plugin {plugin!r}")
            if ds_vars and templ and any(v.get("current", {}).get("value") for v in templ
                                         if v.get("type") == "datasource" and v["name"] == vname):
                fails.add(name, f"datasource variable {vname} has a current value (hard-coded datasource)")

        # values for substitution
        variables: dict[str, str] = {}
        for v in templ:
            if v.get("type") == "datasource":
                continue
            if v.get("includeAll"):
                variables[v["name"]] = v.get("allValue") or ".*"
            else:
                cur = v.get("current", {}).get("value")
                variables[v["name"]] = cur if isinstance(cur, str) and cur else "x"

        def check_ds(ref, where: str, plugin_expected: str | None = None) -> str | None:
            if not isinstance(ref, dict):
                fails.add(where, f"datasource must be an object referencing a datasource variable, got {ref!r}")
                return None
            vname = var_ref_name(ref.get("uid", ""))
            if vname is None or vname not in ds_vars:
                fails.add(where, f"datasource uid {ref.get('uid')!r} is not a datasource variable of this dashboard")
                return None
            plugin = ds_vars[vname]
            if ref.get("type") and ref["type"] != plugin:
                fails.add(where, f"datasource type {ref['type']!r} but variable ${vname} is {plugin!r}")
            if plugin_expected and plugin != plugin_expected:
                fails.add(where, f"expected a {plugin_expected} datasource, got ${vname} ({plugin})")
            return plugin

        for v in templ:
            if v.get("type") != "query":
                continue
            where = f"{name} variable ${v['name']}"
            check_ds(v.get("datasource"), where, "prometheus")
            definition = v.get("definition") or (v.get("query") or {}).get("query", "")
            promql = label_values_to_promql(definition)
            if promql is None:
                fails.add(where, f"unsupported variable query {definition!r} (use label_values(selector, label))")
                continue
            queries.append(Query(promql, where, is_k8s, source="variable"))

        # panels
        ids: set[int] = set()
        for p in iter_panels(dash.get("panels", [])):
            pid = p.get("id")
            title = p.get("title", "?")
            where = f"{name} panel {pid} {title!r}"
            if not isinstance(pid, int):
                fails.add(where, "panel without an integer id")
            elif pid in ids:
                fails.add(where, f"duplicate panel id {pid}")
            ids.add(pid)
            if p.get("type") == "row":
                continue
            gp = p.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                fails.add(where, f"bad gridPos {gp}")
            if not p.get("description"):
                fails.add(where, "panel without a description")
            if "unit" not in p.get("fieldConfig", {}).get("defaults", {}):
                fails.add(where, "panel without a unit")
            plugin = check_ds(p.get("datasource"), where)
            targets = p.get("targets") or []
            if not targets:
                fails.add(where, "panel without targets")
            for t in targets:
                twhere = f"{where} target {t.get('refId', '?')}"
                tplugin = check_ds(t.get("datasource", p.get("datasource")), twhere) or plugin
                if tplugin == "prometheus":
                    expr = t.get("expr", "")
                    if not expr.strip():
                        fails.add(twhere, "empty PromQL expression")
                        continue
                    k8s = is_k8s or any(n.startswith(("kube_", "container_")) for n in metric_names(expr))
                    q = Query(expr, twhere, k8s)
                    q.substituted = substitute(expr, variables, twhere, fails)
                    queries.append(q)
                elif tplugin == "loki":
                    expr = t.get("expr", "")
                    if not re.match(r'\s*\{[^}]*service_name\s*=\s*"latch"[^}]*\}', expr):
                        fails.add(twhere, f"LogQL should start with the stream selector {{service_name=\"latch\"}}: {expr!r}")
                elif tplugin == "tempo":
                    if not t.get("query", "").strip().startswith("{"):
                        fails.add(twhere, "Tempo target without a TraceQL query")
        for q in queries:
            if q.source == "variable" and not q.substituted:
                q.substituted = substitute(q.expr, variables, q.where, fails)

        # nothing that looks like a hard-coded datasource uid anywhere in the file
        for m in re.finditer(r'"datasource":\s*\{[^{}]*"uid":\s*"([^"]*)"', path.read_text()):
            if not m.group(1).startswith("$") and m.group(1) != "-- Grafana --":
                fails.add(name, f"hard-coded datasource uid {m.group(1)!r}")
    return queries


# --------------------------------------------------------------------------------------------
# alert rules and their tests


def operations_anchors() -> set[str]:
    if not OPERATIONS_DOC.exists():
        return set()
    text = OPERATIONS_DOC.read_text()
    anchors = set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#+\s+(.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def check_rules(fails: Failures) -> list[Query]:
    queries: list[Query] = []
    anchors = operations_anchors()
    if not anchors:
        fails.add("docs/operations.md", "missing or without anchors")
    alerts: set[str] = set()
    rule_files = sorted(ALERT_DIR.glob("*.yaml")) + sorted(ALERT_DIR.glob("*.yml"))
    if not rule_files:
        fails.add("dashboards/alerts", "no rule files")
    for path in rule_files:
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record")
                where = f"{path.name} {name}"
                queries.append(Query(rule["expr"], where, source="rule",
                                     kubernetes=any(n.startswith(("kube_", "container_")) for n in metric_names(rule["expr"]))))
                if "alert" not in rule:
                    continue
                if name in alerts:
                    fails.add(where, "duplicate alert name")
                alerts.add(name)
                if not rule.get("for"):
                    fails.add(where, "alert without `for`")
                sev = rule.get("labels", {}).get("severity")
                if sev not in {"critical", "warning", "info"}:
                    fails.add(where, f"severity label must be critical, warning or info, got {sev!r}")
                ann = rule.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        fails.add(where, f"missing annotation {key}")
                url = ann.get("runbook_url", "")
                m = re.fullmatch(r"(?:.*/)?docs/operations\.md#([\w\-]+)", url)
                if not m:
                    fails.add(where, f"runbook_url {url!r} must point to docs/operations.md#<anchor>")
                elif m.group(1) not in anchors:
                    fails.add(where, f"runbook anchor #{m.group(1)} not found in docs/operations.md")
    # every alert has a firing test and a silent test
    fires: set[str] = set()
    silent: set[str] = set()
    test_files = sorted(TEST_DIR.glob("*.yaml")) + sorted(TEST_DIR.glob("*.yml"))
    for path in test_files:
        doc = yaml.safe_load(path.read_text()) or {}
        for test in doc.get("tests", []):
            for art in test.get("alert_rule_test", []):
                (fires if art.get("exp_alerts") else silent).add(art.get("alertname"))
    for a in sorted(alerts):
        if a not in fires:
            fails.add(f"alert {a}", "no promtool test where it fires")
        if a not in silent:
            fails.add(f"alert {a}", "no promtool test where it stays silent")
    return queries


# --------------------------------------------------------------------------------------------
# names and values used by queries


def check_audit_events(fails: Failures) -> None:
    """Every audit event the components can write (AuditKind::as_str) is in EVENTS, so a
    new event cannot reach latch_auth_events_total without the dashboards knowing it."""
    source = ROOT / "crates" / "domain" / "src" / "audit.rs"
    if not source.exists():
        fails.add(str(source.relative_to(ROOT)), "missing: cannot read the audit event names")
        return
    names = set(re.findall(r'AuditKind::\w+\s*=>\s*"([a-z0-9_]+)"', source.read_text()))
    if not names:
        fails.add(str(source.relative_to(ROOT)), "no `AuditKind::X => \"name\"` arms found")
    for name in sorted(names - EVENTS):
        fails.add(str(source.relative_to(ROOT)), f"audit event {name!r} is not in observability.py EVENTS")


def check_names(queries: list[Query], fails: Failures) -> None:
    contract = read_table(DASH_DIR / "metric-contract.txt")
    k8s = read_table(DASH_DIR / "kubernetes-metrics.txt")
    vocab = vocabulary()
    known_labels = set().union(*contract.values(), *k8s.values()) | SYNTHETIC_LABELS | {"le"}
    for q in queries:
        for metric in metric_names(q.expr):
            if metric.startswith(("kube_", "container_")):
                if metric not in k8s:
                    fails.add(q.where, f"Kubernetes metric {metric} is not in dashboards/kubernetes-metrics.txt")
            elif metric not in contract:
                fails.add(q.where, f"metric {metric} is not in the contract (dashboards/metric-contract.txt)")
        for metric, matchers in selectors(q.expr):
            allowed = contract.get(metric) or k8s.get(metric)
            for label, op, value in matchers:
                if allowed is not None and label not in allowed:
                    fails.add(q.where, f"{metric} has no label {label!r} (allowed: {', '.join(sorted(allowed))})")
                values = vocab.get(label)
                if values is None or "$" in value:
                    continue
                if op in ("=", "!="):
                    if value and value not in values:
                        fails.add(q.where, f'{label}{op}"{value}": unknown value (known: {", ".join(sorted(values))})')
                else:
                    for alt in regex_alternatives(value) or []:
                        if alt and alt not in values:
                            fails.add(q.where, f'{label}{op}"{value}": unknown value {alt!r} (known: {", ".join(sorted(values))})')
        for label in grouping_labels(q.expr):
            if label not in known_labels:
                fails.add(q.where, f"grouping by unknown label {label!r}")


# --------------------------------------------------------------------------------------------
# collector


def check_collector(fails: Failures) -> None:
    where = "k8s/collector"
    kpath = COLLECTOR_DIR / "kustomization.yaml"
    if not kpath.exists():
        fails.add(where, "kustomization.yaml missing")
        return
    kust = yaml.safe_load(kpath.read_text())
    docs = []
    for res in kust.get("resources", []):
        p = COLLECTOR_DIR / res
        if not p.exists():
            fails.add(where, f"resource {res} missing")
            continue
        docs.extend(d for d in yaml.safe_load_all(p.read_text()) if d)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"):
        if kind not in by_kind:
            fails.add(where, f"no {kind}")
    # image pinned (in the Deployment, or by a kustomize `images` entry)
    images = [c.get("image", "") for d in by_kind.get("Deployment", [])
              for c in d["spec"]["template"]["spec"].get("containers", [])]
    for img in kust.get("images", []):
        images.append(f"{img.get('name')}:{img.get('newTag', '')}" + (f"@{img['digest']}" if img.get("digest") else ""))
    for image in images:
        if not re.search(r"@sha256:[0-9a-f]{64}$|:\d+\.\d+\.\d+$", image):
            fails.add(where, f"image {image!r} not pinned to an exact release or a digest")
        if "collector-contrib" not in image and "alloy" not in image:
            fails.add(where, f"image {image!r} is not the collector's contrib distribution (or Alloy)")
    # config
    gens = kust.get("configMapGenerator", [])
    cfg_files = [f.split("=")[-1] for g in gens for f in g.get("files", [])]
    if not cfg_files:
        fails.add(where, "no configMapGenerator with the collector config")
        return
    cfg = yaml.safe_load((COLLECTOR_DIR / cfg_files[0]).read_text())
    check_collector_config(cfg, fails)
    # service
    for svc in by_kind.get("Service", []):
        if svc["metadata"]["name"] != "otel-collector":
            fails.add(where, "the Service must be named otel-collector")
        ports = {p["port"] for p in svc["spec"].get("ports", [])}
        if not {4317, 4318} <= ports:
            fails.add(where, f"Service ports {sorted(ports)} must include 4317 and 4318")
    # RBAC for k8sattributes
    need = {("", "pods"), ("", "namespaces"), ("apps", "replicasets")}
    have = set()
    for role in by_kind.get("ClusterRole", []) + by_kind.get("Role", []):
        for rule in role.get("rules", []):
            if {"get", "list", "watch"} <= set(rule.get("verbs", [])):
                for g in rule.get("apiGroups", []):
                    for r in rule.get("resources", []):
                        have.add((g, r))
            if set(rule.get("verbs", [])) - {"get", "list", "watch"}:
                fails.add(where, f"RBAC grants more than read: {rule}")
    for g, r in sorted(need - have):
        fails.add(where, f"RBAC lacks get/list/watch on {g or 'core'}/{r}")
    # deployment hardening
    for dep in by_kind.get("Deployment", []):
        spec = dep["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            fails.add(where, "pod securityContext.runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fails.add(where, "pod seccompProfile must be RuntimeDefault")
        for c in spec.get("containers", []):
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                    or "ALL" not in sc.get("capabilities", {}).get("drop", []):
                fails.add(where, f"container {c['name']}: needs allowPrivilegeEscalation false, readOnlyRootFilesystem, drop ALL")
            res = c.get("resources", {})
            if not all(res.get(k, {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory")):
                fails.add(where, f"container {c['name']}: cpu and memory requests and limits required")
            if not c.get("livenessProbe") or not c.get("readinessProbe"):
                fails.add(where, f"container {c['name']}: probes required")
            secrets = {e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])}
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            secret_dirs = {}
            for vol in spec.get("volumes", []):
                if "secret" in vol:
                    secrets.add(vol["secret"].get("secretName"))
                    if vol["name"] in mounts:
                        secret_dirs[vol["secret"].get("secretName")] = mounts[vol["name"]]
            tmpl = yaml.safe_load((COLLECTOR_DIR / "collector-secret.yaml.template").read_text())
            secret_name = tmpl["metadata"]["name"]
            if secret_name not in secrets:
                fails.add(where, "the Deployment does not read the Secret of collector-secret.yaml.template")
            cfg_text = (COLLECTOR_DIR / cfg_files[0]).read_text()
            for key, value in tmpl.get("stringData", {}).items():
                if "<" not in value:
                    fails.add("collector-secret.yaml.template", f"{key} looks like a real value; keep placeholders")
                refs = [f"${{env:{key}}}"]
                if secret_name in secret_dirs:
                    refs.append(f"${{file:{secret_dirs[secret_name].rstrip('/')}/{key}}}")
                if not any(r in cfg_text for r in refs):
                    fails.add(where, f"Secret key {key} is not used by the collector config ({' or '.join(refs)})")
            args = " ".join(c.get("args", []))
            m = re.search(r"--config=(\S+)", args)
            if not m or not any(m.group(1) == f"{mounts.get(v['name'], '?').rstrip('/')}/{cfg_files[0]}"
                                for v in spec.get("volumes", []) if "configMap" in v):
                fails.add(where, f"container {c['name']}: --config does not point at the mounted {cfg_files[0]}")
    if "data" in yaml.safe_load((COLLECTOR_DIR / "collector-secret.yaml.template").read_text()):
        fails.add("collector-secret.yaml.template", "use stringData placeholders, not data")


def component_type(name: str) -> str:
    return name.split("/", 1)[0]


def check_collector_config(cfg: dict, fails: Failures) -> None:
    where = "k8s/collector/config.yaml"
    sections = {s: set((cfg.get(s) or {}).keys()) for s in ("receivers", "processors", "exporters", "connectors", "extensions")}
    service = cfg.get("service", {})
    pipelines = service.get("pipelines", {})
    used: dict[str, set[str]] = {s: set() for s in sections}
    conn_as_exporter: set[str] = set()
    conn_as_receiver: set[str] = set()
    for pname, p in pipelines.items():
        ptype = pname.split("/")[0]
        if ptype not in ("traces", "metrics", "logs"):
            fails.add(where, f"pipeline {pname}: unknown signal type")
        if not p.get("receivers") or not p.get("exporters"):
            fails.add(where, f"pipeline {pname} needs receivers and exporters")
        for r in p.get("receivers", []):
            if r in sections["connectors"]:
                conn_as_receiver.add(r)
                used["connectors"].add(r)
            elif r in sections["receivers"]:
                used["receivers"].add(r)
            else:
                fails.add(where, f"pipeline {pname}: receiver {r} is not defined")
        for x in p.get("processors", []):
            if x in sections["processors"]:
                used["processors"].add(x)
            else:
                fails.add(where, f"pipeline {pname}: processor {x} is not defined")
        for e in p.get("exporters", []):
            if e in sections["connectors"]:
                conn_as_exporter.add(e)
                used["connectors"].add(e)
            elif e in sections["exporters"]:
                used["exporters"].add(e)
            else:
                fails.add(where, f"pipeline {pname}: exporter {e} is not defined")
        procs = p.get("processors", [])
        external = [r for r in p.get("receivers", []) if r in sections["receivers"]]
        if external and (not procs or component_type(procs[0]) != "memory_limiter"):
            fails.add(where, f"pipeline {pname} receives from outside: memory_limiter should come first")
        if "batch" in {component_type(x) for x in procs} and component_type(procs[-1]) != "batch":
            fails.add(where, f"pipeline {pname}: batch should come last")
    for ext in service.get("extensions", []):
        if ext not in sections["extensions"]:
            fails.add(where, f"service extension {ext} is not defined")
        used["extensions"].add(ext)
    for s, names in sections.items():
        for n in sorted(names - used[s]):
            fails.add(where, f"{s[:-1]} {n} is defined but not used")
    for c in sorted(sections["connectors"]):
        if c not in conn_as_exporter or c not in conn_as_receiver:
            fails.add(where, f"connector {c} must be an exporter of one pipeline and a receiver of another")
    for e, conf in (cfg.get("exporters") or {}).items():
        auth = ((conf or {}).get("auth") or {}).get("authenticator")
        if auth and auth not in sections["extensions"]:
            fails.add(where, f"exporter {e}: authenticator {auth} is not defined")

    # the contract: spanmetrics
    sm = next((v for k, v in (cfg.get("connectors") or {}).items() if component_type(k) == "spanmetrics"), None)
    if sm is None:
        fails.add(where, "no spanmetrics connector")
    else:
        if sm.get("namespace") != "traces.span.metrics":
            fails.add(where, "spanmetrics namespace must be traces.span.metrics")
        hist = sm.get("histogram", {})
        if hist.get("unit") != "ms":
            fails.add(where, "spanmetrics histogram unit must be ms")
        want = ["2ms", "5ms", "10ms", "25ms", "50ms", "100ms", "250ms", "500ms", "1s", "2s", "5s", "10s"]
        if [str(b) for b in hist.get("explicit", {}).get("buckets", [])] != want:
            fails.add(where, f"spanmetrics buckets must be {want}")
        dims = [d.get("name") for d in sm.get("dimensions", [])]
        if dims != ["http.request.method", "http.route", "http.response.status_code", "db.system", "server.address"]:
            fails.add(where, f"spanmetrics dimensions {dims} differ from the contract")
        if sm.get("aggregation_temporality", "AGGREGATION_TEMPORALITY_CUMULATIVE") != "AGGREGATION_TEMPORALITY_CUMULATIVE":
            fails.add(where, "spanmetrics must be cumulative (Prometheus counters)")
    # the contract: count connector
    cnt = next((v for k, v in (cfg.get("connectors") or {}).items() if component_type(k) == "count"), None)
    if cnt is None or "latch.auth.events" not in (cnt.get("logs") or {}):
        fails.add(where, "no count connector metric latch.auth.events")
    else:
        keys = {a["key"] for a in cnt["logs"]["latch.auth.events"].get("attributes", [])}
        for k in ("service.name", "component_id", "event", "outcome"):
            if k not in keys:
                fails.add(where, f"latch.auth.events lacks attribute {k}")
        # deltas must become cumulative before export
        for pname, p in pipelines.items():
            if any(component_type(r) == "count" for r in p.get("receivers", [])):
                if not any(component_type(x) == "deltatocumulative" for x in p.get("processors", [])):
                    fails.add(where, f"pipeline {pname}: count emits delta sums; add deltatocumulative before export")
    if not any(component_type(x) == "k8sattributes" for x in sections["processors"]):
        fails.add(where, "no k8sattributes processor")


# --------------------------------------------------------------------------------------------
# Prometheus HTTP API


def prom_query(base: str, expr: str, timeout: float = 30.0) -> dict:
    data = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(base.rstrip("/") + "/api/v1/query", data=data,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except Exception:  # noqa: BLE001
            return {"status": "error", "error": f"HTTP {e.code}"}


def has_data(result: dict) -> bool:
    data = result.get("data", {})
    if data.get("resultType") == "scalar":
        return True
    return bool(data.get("result"))


# --------------------------------------------------------------------------------------------
# commands


def collect(fails: Failures) -> list[Query]:
    queries = check_dashboards(fails)
    queries += check_rules(fails)
    return queries


def cmd_static(args) -> int:
    fails = Failures()
    queries = collect(fails)
    check_names(queries, fails)
    check_audit_events(fails)
    check_collector(fails)
    parsed = 0
    if args.prometheus:
        for q in queries:
            if q.source == "rule":
                continue  # promtool check rules parses them
            expr = q.substituted or q.expr
            res = prom_query(args.prometheus, expr)
            if res.get("status") != "success":
                fails.add(q.where, f"PromQL rejected: {res.get('error')}\n      {expr}")
            parsed += 1
    n_panels = sum(1 for q in queries if q.source == "panel")
    n_k8s = sum(1 for q in queries if q.source != "rule" and q.kubernetes)
    n_rules = sum(1 for q in queries if q.source == "rule")
    if fails:
        print(f"observability static checks: {len(fails.items)} problem(s)")
        for f in fails.items:
            print("  - " + f)
        return 1
    print(f"dashboards: {n_panels} panel queries and {len(queries) - n_panels - n_rules} variable queries "
          f"({n_k8s} Kubernetes-only), {parsed} parsed by Prometheus; {n_rules} rule expressions; "
          "names, label values, runbooks and collector config consistent")
    return 0


def cmd_queries(args) -> int:
    fails = Failures()
    queries = check_dashboards(fails)
    for q in queries:
        if q.kubernetes and not args.all:
            continue
        print(json.dumps({"where": q.where, "kubernetes": q.kubernetes, "expr": q.expr, "substituted": q.substituted}))
    return 1 if fails else 0


def cmd_live(args) -> int:
    fails = Failures()
    queries = [q for q in check_dashboards(fails) if not q.kubernetes]
    if fails:
        for f in fails.items:
            print("  - " + f)
        return 1
    allow_missing = set(args.allow_missing_label or [])
    empty: list[Query] = []
    errors: list[tuple[Query, str]] = []
    for q in queries:
        res = prom_query(args.prometheus, q.substituted)
        if res.get("status") != "success":
            errors.append((q, str(res.get("error"))))
        elif not has_data(res):
            empty.append(q)
    # labels the queries rely on must exist on the series they select
    missing_labels: dict[tuple[str, str], list[str]] = {}
    checked: dict[tuple[str, str], bool] = {}
    for q in queries:
        sel = selectors(q.substituted)
        names = {m for m, _ in sel} | {m for m in metric_names(q.substituted)}
        pairs = [(m, lbl) for m, ms in sel for lbl, op, v in ms if requires_label(op, v)]
        for lbl in grouping_labels(q.substituted) - SYNTHETIC_LABELS - {"le"}:
            pairs.append(("|".join(sorted(names)), lbl))
        for metrics, lbl in pairs:
            if lbl in allow_missing:
                continue
            key = (metrics, lbl)
            if key not in checked:
                res = prom_query(args.prometheus, f'count({{__name__=~"{metrics}", {lbl}!=""}})')
                checked[key] = res.get("status") == "success" and has_data(res)
            if not checked[key]:
                missing_labels.setdefault(key, []).append(q.where)
    total = len(queries)
    ok = total - len(empty) - len(errors)
    print(f"live check: {ok}/{total} service queries returned data")
    for q, err in errors:
        print(f"  ERROR   {q.where}\n          {q.substituted}\n          {err}")
    for q in empty:
        print(f"  NO DATA {q.where}\n          {q.substituted}")
    for (metrics, lbl), wheres in sorted(missing_labels.items()):
        print(f"  NO LABEL {lbl!r} on any series of {metrics} (used by {len(wheres)} queries, e.g. {wheres[0]})")
    return 1 if (empty or errors or missing_labels) else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("static", help="check dashboards, rules and collector; parse queries with Prometheus")
    s.add_argument("--prometheus", help="base URL of a Prometheus used to parse every query")
    s.set_defaults(fn=cmd_static)
    q = sub.add_parser("queries", help="print the dashboard queries as JSON lines")
    q.add_argument("--all", action="store_true", help="include Kubernetes-only queries")
    q.set_defaults(fn=cmd_queries)
    live = sub.add_parser("live", help="run every non-Kubernetes query against data")
    live.add_argument("--prometheus", required=True)
    live.add_argument("--allow-missing-label", action="append",
                      help="a label that may be absent from the data (e.g. server_address with embedded SQLite)")
    live.set_defaults(fn=cmd_live)
    args = ap.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
