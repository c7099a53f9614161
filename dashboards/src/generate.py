#!/usr/bin/env python3
"""Generate Latch's Grafana dashboards (dashboards/*.json).

The JSON files are the deliverable (import them into Grafana); this script is
their source so that ids, grid positions, datasource references and the PromQL
stay consistent. Edit here, then run:

    python3 dashboards/src/generate.py          # rewrite dashboards/*.json
    python3 dashboards/src/generate.py --check  # fail if the JSON is stale

Every PromQL query uses only the series named in docs/observability.md (the
metric contract). scripts/checks/observability.sh parses every query against a
real Prometheus; scripts/checks/observability-live.sh runs every non-Kubernetes
query against a Prometheus scraping `latch up --metrics-listen` and fails on
any query that returns no data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent

PROM = {"type": "prometheus", "uid": "${prometheus}"}
LOKI = {"type": "loki", "uid": "${loki}"}
TEMPO = {"type": "tempo", "uid": "${tempo}"}

# --- label selectors shared by the queries -------------------------------------------------

SVC = 'service_name="latch"'
SERVER = f'{SVC}, span_kind="SPAN_KIND_SERVER"'
CLIENT = f'{SVC}, span_kind="SPAN_KIND_CLIENT"'
INTERNAL = f'{SVC}, span_kind="SPAN_KIND_INTERNAL"'
ROUTE = 'http_route=~"$route"'
CALLS = "traces_span_metrics_calls_total"
DUR = "traces_span_metrics_duration_milliseconds"
# Kubelet probes (liveness /health, readiness /ready) are excluded from user-facing ratios.
NOT_PROBES = 'http_route!~"/health|/ready"'
SQLITE = f'{CLIENT}, db_system="sqlite"'
# Outbound HTTP client spans are SQLite Cloud calls, except those to the email webhook
# (recovery and verification messages): the Database dashboard's $webhook_host variable
# names that host, and its spans are left out (empty: nothing is left out).
SQLCLOUD = f'{CLIENT}, server_address!="", server_address!="$webhook_host"'
AUTH = "latch_auth_events_total"
# Account recovery and email verification (issue 13): the audit events of the flows, and
# the one line per webhook delivery (outcome success or failure; "logged" in development,
# where a link is printed instead of sent).
RECOVERY_EVENTS = "recovery_requested|password_reset|verification_requested|email_verified"
DELIVERY = 'event="email_delivery"'
DELIVERED = f'{DELIVERY}, outcome=~"success|failure"'
# The admin API (issue 15): each change an admin makes writes one audit line (outcome
# success) with the acting admin's id (actor_id) beside the account's (user_id). Reads
# (list, detail, audit trail) and refusals write none: the span metrics show those.
ADMIN_EVENTS = "admin_user_updated|admin_unlock|admin_sessions_revoked"
ADMIN = f'event=~"{ADMIN_EVENTS}"'
ADMIN_ROUTES = 'http_route=~"/admin/.+"'
# LatchAdminActionBurst (dashboards/alerts/latch-alerts.yaml): more than this many admin
# actions in 5 minutes.
ADMIN_BURST = 20
# The second factor (issue 14): TOTP enrolment (mfa_enrolled at confirm), the second step
# of a sign-in (mfa_verified), any wrong, replayed or malformed code or wrong recovery code
# (mfa_failed, outcome failure; outcome denied when refused during a lock-out), removal,
# recovery codes spent and regenerated. The four routes that check codes share one
# lock-out per user; the lock-out itself is a `lockout` line from those components.
MFA_EVENTS = "mfa_enrolled|mfa_verified|mfa_failed|mfa_removed|recovery_code_used|recovery_codes_regenerated"
MFA = f'event=~"{MFA_EVENTS}"'
MFA_CODE_COMPONENTS = 'component_id=~"mfa-confirm|mfa-remove|mfa-recovery-codes|mfa-verify"'
MFA_ROUTES = 'http_route=~"/auth/mfa/.+"'
AT_VERIFY = 'event=~"mfa_verified|mfa_failed", component_id="mfa-verify"'
# LatchSecondFactorFailureBurst (dashboards/alerts/latch-alerts.yaml): more than this many
# wrong codes in 10 minutes, all users together.
MFA_FAILURE_BURST = 25
SPIN_REQ = "spin_request_count_total"
MEM = "spin_component_memory_used_bytes"
MEM_INIT = "spin_component_memory_used_on_init_bytes"
DB_ERROR = 'status_code="STATUS_CODE_ERROR"'
K8S_POD = 'namespace="$namespace", pod=~"latch-[a-z0-9]+-[a-z0-9]+"'
K8S_CONTAINER = K8S_POD + ', container!="", container!="POD"'
HPA = 'namespace="$namespace", horizontalpodautoscaler=~"$hpa"'


def by_backend(metric: str, fn: str = "rate", window: str = "$__rate_interval", extra: str = "") -> str:
    """Client spans of both database backends, labelled `backend`.

    Embedded SQLite: spin_sqlite.execute client spans (db_system="sqlite").
    SQLite Cloud: outbound HTTP client spans; server_address is the database host.
    Latch's only other outbound call is the email webhook, whose host the dashboard's
    $webhook_host variable excludes; every other client span with a server_address is
    a database call. Whichever backend is configured, the query returns data.
    """
    extra = f", {extra}" if extra else ""
    return (
        f'label_replace({fn}({metric}{{{SQLITE}{extra}}}[{window}]), "backend", "sqlite (embedded)", "", "")'
        f' or label_replace({fn}({metric}{{{SQLCLOUD}{extra}}}[{window}]), "backend", "sqlitecloud $1", "server_address", "(.*)")'
    )


def tempo_explore(traceql: str) -> str:
    """A data link into Explore with a Tempo TraceQL (or trace id) query."""
    panes = (
        '{"t":{"datasource":"${tempo}","queries":[{"refId":"A","datasource":{"type":"tempo","uid":"${tempo}"},'
        '"queryType":"traceql","query":"' + traceql.replace('"', '\\"') + '"}],'
        '"range":{"from":"${__from}","to":"${__to}"}}}'
    )
    return "/explore?schemaVersion=1&orgId=1&panes=" + panes


# --- panel builders ------------------------------------------------------------------------


class Dash:
    def __init__(self, uid: str, title: str, tags: list[str], description: str):
        self.uid = uid
        self.title = title
        self.tags = tags
        self.description = description
        self.panels: list[dict] = []
        self.variables: list[dict] = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    # layout: panels flow left to right, 24 columns wide
    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x != 0:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def ds_var(self, name: str, label: str, plugin: str) -> None:
        self.variables.append(
            {
                "name": name,
                "label": label,
                "type": "datasource",
                "query": plugin,
                "regex": "",
                "current": {},
                "hide": 0,
                "includeAll": False,
                "multi": False,
                "options": [],
                "refresh": 1,
                "skipUrlSync": False,
            }
        )

    def query_var(self, name: str, label: str, definition: str, multi: bool = True, default: str | None = None,
                  all_value: str = ".*") -> None:
        v = {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": PROM,
            "definition": definition,
            "query": {"query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "hide": 0,
            "options": [],
            "skipUrlSync": False,
        }
        if multi:
            v.update(
                {
                    "multi": True,
                    "includeAll": True,
                    "allValue": all_value,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                }
            )
        else:
            v.update(
                {
                    "multi": False,
                    "includeAll": False,
                    "current": {"selected": True, "text": default, "value": default},
                }
            )
        self.variables.append(v)

    def textbox_var(self, name: str, label: str, description: str, default: str = "") -> None:
        self.variables.append(
            {
                "name": name,
                "label": label,
                "description": description,
                "type": "textbox",
                "query": default,
                "current": {"selected": False, "text": default, "value": default},
                "options": [{"selected": True, "text": default, "value": default}],
                "hide": 0,
                "skipUrlSync": False,
            }
        )

    def _panel(self, kind, title, description, w, h, targets, unit, thresholds, ds, options, custom=None,
               overrides=None, links=None, decimals=None, min_=0, max_=None):
        steps = [{"color": "green", "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        defaults = {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
            "color": {"mode": "thresholds" if kind == "stat" else "palette-classic"},
        }
        if min_ is not None:
            defaults["min"] = min_
        if max_ is not None:
            defaults["max"] = max_
        if decimals is not None:
            defaults["decimals"] = decimals
        if custom:
            defaults["custom"] = custom
        if links:
            defaults["links"] = links
        panel = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": ds,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options,
            "targets": targets,
        }
        self.panels.append(panel)
        return panel

    @staticmethod
    def prom_targets(exprs, instant=False):
        out = []
        for i, item in enumerate(exprs):
            expr, legend = item[0], item[1]
            t = {
                "refId": chr(ord("A") + i),
                "datasource": PROM,
                "editorMode": "code",
                "expr": expr,
                "legendFormat": legend,
                "range": not instant,
                "instant": instant,
            }
            if len(item) > 2 and item[2]:
                t["exemplar"] = True
            out.append(t)
        return out

    def stat(self, title, description, expr, unit, thresholds=None, w=6, h=5, legend="", decimals=None):
        return self._panel(
            "stat", title, description, w, h, self.prom_targets([(expr, legend)], instant=False), unit,
            thresholds, PROM,
            {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background",
                "graphMode": "area",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            },
            decimals=decimals,
        )

    def ts(self, title, description, exprs, unit, thresholds=None, w=12, h=8, stack=False, links=None,
           overrides=None, min_=0, max_=None, threshold_style="off"):
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": threshold_style},
        }
        return self._panel(
            "timeseries", title, description, w, h, self.prom_targets(exprs), unit, thresholds, PROM,
            {
                "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max", "lastNotNull"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
            custom=custom, links=links, overrides=overrides, min_=min_, max_=max_,
        )

    def logs(self, title, description, expr, w=24, h=12, overrides=None):
        return self._panel(
            "logs", title, description, w, h,
            [{"refId": "A", "datasource": LOKI, "editorMode": "code", "expr": expr, "queryType": "range"}],
            "none", None, LOKI,
            {
                "showTime": True,
                "showLabels": False,
                "showCommonLabels": False,
                "wrapLogMessage": True,
                "prettifyLogMessage": False,
                "enableLogDetails": True,
                "dedupStrategy": "none",
                "sortOrder": "Descending",
            },
            overrides=overrides, min_=None,
        )

    def traces_table(self, title, description, traceql, w=24, h=9):
        return self._panel(
            "table", title, description, w, h,
            [{"refId": "A", "datasource": TEMPO, "queryType": "traceql", "query": traceql, "limit": 20,
              "tableType": "traces"}],
            "none", None, TEMPO, {"showHeader": True, "cellHeight": "sm"}, min_=None,
        )

    def to_json(self) -> dict:
        requires = [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ]
        kinds = {p["type"] for p in self.panels if p["type"] != "row"}
        ds_kinds = {v["query"] for v in self.variables if v["type"] == "datasource"}
        if "loki" in ds_kinds:
            requires.append({"type": "datasource", "id": "loki", "name": "Loki", "version": "1.0.0"})
        if "tempo" in ds_kinds:
            requires.append({"type": "datasource", "id": "tempo", "name": "Tempo", "version": "1.0.0"})
        for k in sorted(kinds):
            requires.append({"type": "panel", "id": k, "name": k, "version": ""})
        return {
            "__inputs": [],
            "__requires": requires,
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [
                {
                    "type": "dashboards",
                    "title": "Latch dashboards",
                    "tags": ["latch"],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                }
            ],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": 39,
            "tags": self.tags,
            "templating": {"list": self.variables},
            "time": {"from": "now-3h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


# --- dashboards ---------------------------------------------------------------------------


def overview() -> Dash:
    d = Dash(
        "latch-service-overview",
        "Latch / Service overview",
        ["latch", "service"],
        "Request rate, errors and latency of every Latch route, from the span metrics the collector's "
        "spanmetrics connector derives from Spin's server spans (traces_span_metrics_*).",
    )
    d.ds_var("prometheus", "Metrics", "prometheus")
    d.ds_var("tempo", "Traces", "tempo")
    d.query_var("route", "Route",
                f"label_values({CALLS}{{{SERVER}}}, http_route)")

    all_req = f"sum(rate({CALLS}{{{SERVER}, {ROUTE}}}[$__rate_interval]))"
    d.row("Golden signals")
    d.stat("Requests per second",
           "All server spans (one per HTTP request) on the selected routes, including kubelet probes.",
           all_req, "reqps", decimals=2)
    d.stat("5xx ratio (user traffic)",
           "Share of requests answered 5xx, excluding the /health and /ready probes. "
           "The LatchHighErrorRate alert fires above 5 % (sustained 5 min).",
           f"(sum(rate({CALLS}{{{SERVER}, {ROUTE}, {NOT_PROBES}, http_response_status_code=~\"5..\"}}[$__rate_interval]))"
           f" or 0 * sum(rate({CALLS}{{{SERVER}, {ROUTE}, {NOT_PROBES}}}[$__rate_interval])))"
           f" / sum(rate({CALLS}{{{SERVER}, {ROUTE}, {NOT_PROBES}}}[$__rate_interval]))",
           "percentunit", [(0.01, "orange"), (0.05, "red")], decimals=2)
    d.stat("p95 latency",
           "95th percentile of server span duration over the selected routes. LatchHighLatencyP95 fires above 2 s per route.",
           f"histogram_quantile(0.95, sum by (le) (rate({DUR}_bucket{{{SERVER}, {ROUTE}}}[$__rate_interval])))",
           "ms", [(500, "orange"), (2000, "red")], decimals=0)
    d.stat("Instances",
           "Runtime instances (pods) reporting telemetry: one target_info series per Spin runtime.",
           'count(target_info{service_name="latch"})', "none", decimals=0)

    d.row("Traffic")
    d.ts("Requests per second by route",
         "Server spans per second, split by the manifest route (http.route).",
         [(f"sum by (http_route) (rate({CALLS}{{{SERVER}, {ROUTE}}}[$__rate_interval]))", "{{http_route}}")],
         "reqps", stack=True)
    d.ts("Responses per second by status code",
         "HTTP status codes answered by Latch (http.response.status_code on the server span).",
         [(f"sum by (http_response_status_code) (rate({CALLS}{{{SERVER}, {ROUTE}}}[$__rate_interval]))",
           "{{http_response_status_code}}")],
         "reqps", stack=True)
    d.ts("Client errors (4xx) per second by status code",
         "400 (validation, or an invalid one-time token on /auth/password/reset and /auth/email/verify, or a "
         "wrong code or sign-in challenge on /auth/mfa/...), "
         "401 (bad credentials or token), 403 (address not verified, with require_verified_email; on /admin/..., "
         "no admin role or self-demotion; aal2_required when a route needs a session signed in with the "
         "second factor), 404 (no second factor on /auth/mfa/totp and /auth/mfa/recovery-codes), "
         "409 (email taken, already verified on resend, a factor already enabled or none pending), "
         "429 (rate limit or lock-out) and other 4xx. "
         "A rise in 401/429 on /auth/signin is usually credential stuffing: see the Auth outcomes dashboard.",
         [(f"sum by (http_response_status_code) (rate({CALLS}{{{SERVER}, {ROUTE}, http_response_status_code=~\"4..\"}}[$__rate_interval]))",
           "{{http_response_status_code}}")],
         "reqps")
    d.ts("5xx ratio by route",
         "Share of each route's requests answered 5xx. 503 from database-backed routes means the database "
         "is unavailable (LatchDatabaseUnavailable); 500 means a handler error or a guest trap.",
         [(f"(sum by (http_route) (rate({CALLS}{{{SERVER}, {ROUTE}, http_response_status_code=~\"5..\"}}[$__rate_interval]))"
           f" or 0 * sum by (http_route) (rate({CALLS}{{{SERVER}, {ROUTE}}}[$__rate_interval])))"
           f" / sum by (http_route) (rate({CALLS}{{{SERVER}, {ROUTE}}}[$__rate_interval]))", "{{http_route}}")],
         "percentunit", [(0.05, "red")], threshold_style="line", max_=1)

    d.row("Latency (server spans, ms)")
    slow_link = [{"title": "Slow traces of this route in Tempo",
                  "url": tempo_explore('{resource.service.name="latch" && kind=server && span.http.route="${__field.labels.http_route}" && duration>500ms}')}]
    for q, name, thr in ((0.5, "p50", [(250, "orange"), (1000, "red")]),
                         (0.95, "p95", [(500, "orange"), (2000, "red")]),
                         (0.99, "p99", [(1000, "orange"), (5000, "red")])):
        d.ts(f"{name} latency by route",
             f"{name} of server span duration per route, from the explicit-bucket histogram "
             "(buckets 2 ms ... 10 s). Sign-in and password change are dominated by argon2id hashing. "
             "Click a series to open slow traces of that route in Tempo.",
             [(f"histogram_quantile({q}, sum by (http_route, le) (rate({DUR}_bucket{{{SERVER}, {ROUTE}}}[$__rate_interval])))",
               "{{http_route}}", True)],
             "ms", thr, w=8, links=slow_link, threshold_style="line")
    return d


def auth() -> Dash:
    d = Dash(
        "latch-auth-outcomes",
        "Latch / Auth outcomes",
        ["latch", "security"],
        "Authentication events: the JSON audit lines Latch's components write to stdout, counted by the "
        "collector's count connector into latch_auth_events_total, and the lines themselves in Loki.",
    )
    d.ds_var("prometheus", "Metrics", "prometheus")
    d.ds_var("loki", "Logs", "loki")
    d.ds_var("tempo", "Traces", "tempo")
    d.query_var("event", "Event", f'label_values({AUTH}{{{SVC}}}, event)')
    d.query_var("outcome", "Outcome", f'label_values({AUTH}{{{SVC}}}, outcome)')

    def inc(sel: str) -> str:
        return f"sum(increase({AUTH}{{{SVC}, {sel}}}[$__range]))"

    d.row("In the selected time range")
    d.stat("Sign-ins succeeded", "Successful sign-ins in the selected time range: the password was right. For a "
           "user with a second factor that opens no session yet (reason mfa_required): the session comes with "
           "mfa_verified, in the Second factor row below.",
           inc('event="signin", outcome="success"'), "short", decimals=0, w=5)
    d.stat("Sign-ins failed or denied",
           "Sign-ins with outcome failure (bad credentials, validation) or denied (locked out, inactive, rate limited).",
           inc('event="signin", outcome=~"failure|denied"'), "short", [(50, "orange"), (500, "red")], decimals=0, w=5)
    d.stat("Lock-outs", "Accounts locked after repeated failed sign-ins.",
           inc('event="lockout"'), "short", [(1, "orange"), (20, "red")], decimals=0, w=5)
    d.stat("Refresh token reuse detected",
           "A rotated refresh token was presented again: a stolen token or a client bug. Latch revokes the whole "
           "session family. Any value above zero deserves a look at the audit lines below.",
           inc('event="refresh_reuse_detected"'), "short", [(1, "red")], decimals=0, w=5)
    d.stat("Sign-ups", "Accounts created in the selected time range.",
           inc('event="signup", outcome="success"'), "short", decimals=0, w=4)

    d.row("Rates")
    d.ts("Sign-ins per minute by outcome", "Sign-in attempts per minute split by outcome.",
         [(f"60 * sum by (outcome) (rate({AUTH}{{{SVC}, event=\"signin\"}}[$__rate_interval]))", "{{outcome}}")],
         "short", stack=True, w=8)
    d.ts("Sign-in failure ratio",
         "Share of sign-in attempts that failed or were denied. A sudden rise with many client addresses is "
         "credential stuffing; with one address, brute force (lock-outs follow).",
         [(f"(sum(rate({AUTH}{{{SVC}, event=\"signin\", outcome!=\"success\"}}[$__rate_interval]))"
           f" or 0 * sum(rate({AUTH}{{{SVC}, event=\"signin\"}}[$__rate_interval])))"
           f" / sum(rate({AUTH}{{{SVC}, event=\"signin\"}}[$__rate_interval]))", "failed or denied")],
         "percentunit", [(0.3, "orange"), (0.6, "red")], w=8, max_=1, threshold_style="line")
    d.ts("Lock-outs and refresh reuse per minute", "Security-relevant events per minute.",
         [(f"60 * sum(rate({AUTH}{{{SVC}, event=\"lockout\"}}[$__rate_interval]))", "lock-outs"),
          (f"60 * sum(rate({AUTH}{{{SVC}, event=\"refresh_reuse_detected\"}}[$__rate_interval]))", "refresh token reuse")],
         "short", w=8)
    d.ts("Sign-ups per minute by outcome", "Sign-up attempts per minute (failure includes email already taken).",
         [(f"60 * sum by (outcome) (rate({AUTH}{{{SVC}, event=\"signup\"}}[$__rate_interval]))", "{{outcome}}")],
         "short", stack=True, w=12)
    d.ts("All events per minute", "Every audit event type by outcome (filtered by the Event and Outcome variables).",
         [(f"60 * sum by (event, outcome) (rate({AUTH}{{{SVC}, event=~\"$event\", outcome=~\"$outcome\"}}[$__rate_interval]))",
           "{{event}} {{outcome}}")],
         "short", w=12)
    d.ts("Events per minute by component", "Which route component wrote the audit lines (component_id).",
         [(f"60 * sum by (component_id) (rate({AUTH}{{{SVC}, event=~\"$event\"}}[$__rate_interval]))", "{{component_id}}")],
         "short", stack=True, w=24, h=7)

    d.row("Account recovery and email verification")
    d.stat("Recovery requests", "POST /auth/password/forgot for an existing, active account that got a recovery "
           "token (recovery_requested success). Unknown addresses answer the same 202 and write no event.",
           inc('event="recovery_requested", outcome="success"'), "short", decimals=0, w=5)
    d.stat("Passwords reset", "Successful POST /auth/password/reset (password_reset success): the account's "
           "sessions were all revoked.",
           inc('event="password_reset", outcome="success"'), "short", decimals=0, w=5)
    d.stat("Addresses verified", "Successful POST /auth/email/verify (email_verified success).",
           inc('event="email_verified", outcome="success"'), "short", decimals=0, w=5)
    d.stat("Invalid one-time tokens",
           "Reset or verification attempts with a bad, used, expired or superseded token (outcome failure, reason "
           "invalid_token). A steady stream from few addresses is token guessing (128 bits: hopeless, but worth a block).",
           inc('event=~"password_reset|email_verified", outcome="failure"'), "short", [(10, "orange"), (100, "red")],
           decimals=0, w=5)
    d.stat("Recovery lock-outs", "Recovery or verification requests refused by the per-account or per-client "
           "throttle (outcome denied): they still answered 202 (forgot) and sent nothing.",
           inc(f'event=~"{RECOVERY_EVENTS}", outcome="denied"'), "short", [(1, "orange"), (50, "red")],
           decimals=0, w=4)
    d.ts("Recovery and verification events per minute",
         "recovery_requested (forgot), password_reset (reset), verification_requested (resend) and email_verified "
         "(verify), by outcome.",
         [(f"60 * sum by (event, outcome) (rate({AUTH}{{{SVC}, event=~\"{RECOVERY_EVENTS}\"}}[$__rate_interval]))",
           "{{event}} {{outcome}}")],
         "short", w=12)
    d.ts("Password reset failure ratio",
         "Share of reset attempts refused for their token. Users who click an old link after asking twice see this; "
         "a high ratio with many attempts is someone trying tokens.",
         [(f"(sum(rate({AUTH}{{{SVC}, event=\"password_reset\", outcome!=\"success\"}}[$__rate_interval]))"
           f" or 0 * sum(rate({AUTH}{{{SVC}, event=\"password_reset\"}}[$__rate_interval])))"
           f" / sum(rate({AUTH}{{{SVC}, event=\"password_reset\"}}[$__rate_interval]))", "failed or denied")],
         "percentunit", [(0.5, "orange")], w=12, max_=1, threshold_style="line")

    d.row("Email delivery (webhook)")
    d.stat("Messages delivered", "Recovery and verification messages the email webhook accepted (any 2xx) in the "
           "selected time range.",
           inc(f'{DELIVERY}, outcome="success"'), "short", decimals=0, w=6)
    d.stat("Deliveries failed",
           "Messages the webhook refused, or that timed out (email_webhook_timeout_ms) or could not connect. The API "
           "answered 202 anyway; the token stays valid. LatchEmailDeliveryFailing fires above 20 % (at least 3).",
           inc(f'{DELIVERY}, outcome="failure"'), "short", [(1, "orange"), (10, "red")], decimals=0, w=6)
    d.ts("Deliveries per minute by outcome and component",
         "One per message: signup (verification after sign-up), forgot (recovery), resend (verification). "
         "logged: development without email_webhook_url, the link was printed in the runner's log, not sent.",
         [(f"60 * sum by (component_id, outcome) (rate({AUTH}{{{SVC}, {DELIVERY}}}[$__rate_interval]))",
           "{{component_id}} {{outcome}}")],
         "short", w=12, stack=True)
    d.ts("Delivery failure ratio",
         "Failed deliveries over all deliveries (success + failure). The alert line is at 20 %.",
         [(f"(sum(rate({AUTH}{{{SVC}, {DELIVERY}, outcome=\"failure\"}}[$__rate_interval]))"
           f" or 0 * sum(rate({AUTH}{{{SVC}, {DELIVERED}}}[$__rate_interval])))"
           f" / sum(rate({AUTH}{{{SVC}, {DELIVERED}}}[$__rate_interval]))", "failed")],
         "percentunit", [(0.2, "red")], w=12, max_=1, threshold_style="line")
    d.logs("Failed deliveries",
           "The delivery failure lines with their reason (status code, timeout, connection error). They carry the "
           "request id of the API call, never the token, the link or the address.",
           '{service_name="latch"} |= "email_delivery" | json | __error__="" | event="email_delivery" '
           '| outcome="failure" | line_format "{{.kind}} reason={{.reason}} request={{.request_id}}"',
           h=8)

    d.row("Second factor (TOTP and recovery codes)")
    d.stat("Second-factor sign-ins", "POST /auth/mfa/verify completed a sign-in (mfa_verified success): a session at "
           "aal2, with a TOTP code, or with a recovery code (reason recovery_code, and a recovery_code_used line).",
           inc('event="mfa_verified", outcome="success"'), "short", decimals=0, w=4)
    d.stat("Wrong codes", "mfa_failed (outcome failure): a wrong, replayed, malformed or out-of-window TOTP code, or "
           "a wrong or used recovery code, on confirm, remove, recovery-codes or verify (the reason is in the "
           "lines below). Each counts toward the user's lock-out (5 in 15 minutes). "
           f"LatchSecondFactorFailureBurst fires above {MFA_FAILURE_BURST} in 10 minutes.",
           inc('event="mfa_failed", outcome="failure"'), "short", [(10, "orange"), (100, "red")], decimals=0, w=4)
    d.stat("Code lock-outs", "Users whose second-factor codes were locked (a lockout line from an mfa-* component), "
           "and attempts refused while locked (mfa_failed, outcome denied: no code was checked).",
           f'sum(increase({AUTH}{{{SVC}, event="lockout", {MFA_CODE_COMPONENTS}}}[$__range])'
           f' or increase({AUTH}{{{SVC}, event="mfa_failed", outcome="denied"}}[$__range]))',
           "short", [(1, "orange"), (20, "red")], decimals=0, w=4)
    d.stat("Factors enrolled", "POST /auth/mfa/totp/confirm activated a factor (mfa_enrolled): the user's other "
           "sessions were revoked and sign-in now asks for a code.",
           inc('event="mfa_enrolled", outcome="success"'), "short", decimals=0, w=4)
    d.stat("Factors removed", "DELETE /auth/mfa/totp removed a factor (mfa_removed), from a session signed in with "
           "it. A run of removals nobody asked for is worth a look at the lines below.",
           inc('event="mfa_removed", outcome="success"'), "short", [(10, "orange")], decimals=0, w=4)
    d.stat("Recovery codes used", "Recovery codes spent (recovery_code_used), at sign-in or to remove the factor: "
           "usually a lost phone. Each code works once.",
           inc('event="recovery_code_used", outcome="success"'), "short", [(1, "orange")], decimals=0, w=4)
    d.ts("Second-factor events per minute by event and outcome",
         "Every second-factor audit event: mfa_enrolled, mfa_verified, mfa_failed, mfa_removed, recovery_code_used "
         "and recovery_codes_regenerated, by outcome.",
         [(f"60 * sum by (event, outcome) (rate({AUTH}{{{SVC}, {MFA}}}[$__rate_interval]))", "{{event}} {{outcome}}")],
         "short", w=8)
    d.ts("Code failure ratio at sign-in",
         "Wrong codes over all codes presented to POST /auth/mfa/verify (mfa_failed over mfa_failed + mfa_verified). "
         "Typos and clock drift keep it low; a high ratio over many users is someone holding passwords and "
         "guessing codes.",
         [(f"(sum(rate({AUTH}{{{SVC}, event=\"mfa_failed\", component_id=\"mfa-verify\"}}[$__rate_interval]))"
           f" or 0 * sum(rate({AUTH}{{{SVC}, {AT_VERIFY}}}[$__rate_interval])))"
           f" / sum(rate({AUTH}{{{SVC}, {AT_VERIFY}}}[$__rate_interval]))", "wrong codes")],
         "percentunit", [(0.3, "orange"), (0.6, "red")], w=8, max_=1, threshold_style="line")
    d.ts("Wrong codes in 10 minutes",
         f"mfa_failed (wrong codes, and attempts refused while locked) over a sliding 10-minute window, all users "
         f"together: LatchSecondFactorFailureBurst fires above {MFA_FAILURE_BURST} (the line) for 5 minutes.",
         [(f'sum(increase({AUTH}{{{SVC}, event="mfa_failed"}}[10m]))', "wrong codes (10 min)")],
         "short", [(MFA_FAILURE_BURST, "red")], w=8, threshold_style="line")
    d.ts("Second-factor requests by route and status",
         "Every request to /auth/mfa/..., by route and status code, from the server spans: 400 wrong code or "
         "challenge, 403 aal2_required, 404 no factor, 409 already enabled or nothing pending, 429 locked, 503 "
         "no mfa_encryption_key in production.",
         [(f"sum by (http_route, http_response_status_code) (rate({CALLS}{{{SERVER}, {MFA_ROUTES}}}"
           "[$__rate_interval]))", "{{http_route}} {{http_response_status_code}}")],
         "reqps", w=12)
    d.ts("Second-factor lock-outs per minute",
         "lockout lines from the second-factor components (the 5th wrong code in 15 minutes locks the user's codes "
         "for 60 s, doubling to at most an hour) and attempts refused while locked.",
         [(f"60 * sum(rate({AUTH}{{{SVC}, event=\"lockout\", {MFA_CODE_COMPONENTS}}}[$__rate_interval]))",
           "lock-outs"),
          (f"60 * sum(rate({AUTH}{{{SVC}, event=\"mfa_failed\", outcome=\"denied\"}}[$__rate_interval]))",
           "refused while locked")],
         "short", w=12)
    d.logs("Second-factor failures",
           "Wrong codes and lock-outs with their reason (wrong_code, replayed_code, malformed_code, "
           "wrong_recovery_code, locked_out, too_many_failures), the user, the client address and the request. "
           "Never a code or a secret.",
           '{service_name="latch"} |= "/auth/mfa/" | json | __error__="" '
           '| event=~"mfa_failed|lockout" | route=~"/auth/mfa/.+" '
           '| line_format "{{.event}} {{.outcome}} reason={{.reason}} route={{.route}} user={{.user_id}} '
           'ip={{.client_ip}} request={{.request_id}}"',
           h=8)

    d.row("Admin actions (admin API)")
    d.stat("Admin actions", "Changes made through the admin API in the selected time range: account updates, "
           "lock-outs lifted and session revocations (one audit line each, with the acting admin's id).",
           inc(ADMIN), "short", decimals=0, w=5)
    d.stat("Accounts changed", "PATCH /admin/users/{id} (admin_user_updated): isActive and/or roles changed. "
           "Disabling an account also revoked all of its sessions.",
           inc('event="admin_user_updated"'), "short", decimals=0, w=5)
    d.stat("Lock-outs lifted", "POST /admin/users/{id}/unlock (admin_unlock): the account's sign-in, password "
           "check and recovery throttle counters were cleared.",
           inc('event="admin_unlock"'), "short", decimals=0, w=5)
    d.stat("Session revocations", "POST /admin/users/{id}/sessions/revoke (admin_sessions_revoked): every session "
           "of one account revoked (one event however many sessions).",
           inc('event="admin_sessions_revoked"'), "short", decimals=0, w=5)
    d.stat("Admin requests refused",
           "Requests to /admin/... answered 401 (no or ended session) or 403 (no admin role, or an admin trying "
           "to demote or disable themselves). Refusals write no audit line; a steady count means someone probes "
           "the admin API with a user token.",
           f"sum(increase({CALLS}{{{SERVER}, {ADMIN_ROUTES}, http_response_status_code=~\"401|403\"}}[$__range]))",
           "short", [(1, "orange"), (20, "red")], decimals=0, w=4)
    d.ts("Admin actions per minute by event",
         "admin_user_updated, admin_unlock and admin_sessions_revoked per minute.",
         [(f"60 * sum by (event) (rate({AUTH}{{{SVC}, {ADMIN}}}[$__rate_interval]))", "{{event}}")],
         "short", stack=True, w=8)
    d.ts("Admin actions in 5 minutes",
         f"All admin actions over a sliding 5-minute window: LatchAdminActionBurst fires above {ADMIN_BURST} "
         "(the line), for a minute. A burst is a bulk clean-up, a script, or a stolen admin token.",
         [(f"sum(increase({AUTH}{{{SVC}, {ADMIN}}}[5m]))", "admin actions (5 min)")],
         "short", [(ADMIN_BURST, "red")], w=8, threshold_style="line")
    d.ts("Admin API requests by route and status",
         "Every request to the admin routes, reads included (list, detail, audit trail), by route and status "
         "code, from the server spans.",
         [(f"sum by (http_route, http_response_status_code) (rate({CALLS}{{{SERVER}, {ADMIN_ROUTES}}}"
           "[$__rate_interval]))", "{{http_route}} {{http_response_status_code}}")],
         "reqps", w=8)
    d.logs("Admin action lines",
           "Who did what to whom: the acting admin (actor_id), the account (user_id), the reason (disabled, "
           "enabled, roles...) and the request id. GET /admin/audit?userId=... returns the same events from the "
           "database, with the full history.",
           '{service_name="latch"} |= "\\"admin_" | json | __error__="" | event=~"' + ADMIN_EVENTS + '" '
           '| line_format "{{.event}} actor={{.actor_id}} user={{.user_id}} reason={{.reason}} ip={{.client_ip}} '
           'request={{.request_id}}"',
           h=8)

    d.row("Audit lines and traces")
    trace_link = [{
        "matcher": {"id": "byName", "options": "trace_id"},
        "properties": [{"id": "links", "value": [
            {"title": "Open this trace in Tempo", "url": tempo_explore("${__value.raw}")}]}],
    }]
    d.logs("Audit lines",
           "The JSON audit lines (one per auth event) from Loki. Expand a line: the trace_id field links to the "
           "request's trace in Tempo. Emails are masked by Latch; never log tokens or passwords.",
           '{service_name="latch"} |= "\\"event\\"" | json | __error__="" | event=~"$event" | outcome=~"$outcome"',
           overrides=trace_link)
    d.logs("Failures and denials",
           "Only failure and denied outcomes, with their reason (invalid_credentials, locked, rate_limited, ...).",
           '{service_name="latch"} |= "\\"event\\"" | json | __error__="" | outcome=~"failure|denied" '
           '| line_format "{{.event}} {{.outcome}} reason={{.reason}} route={{.route}} ip={{.client_ip}} trace={{.trace_id}}"',
           h=10, overrides=trace_link)
    d.traces_table("Recent failed auth requests (Tempo)",
                   "Server spans of /auth/* answered 4xx or 5xx; click a trace id to open it.",
                   '{resource.service.name="latch" && kind=server && span.http.route=~"/auth/.*" && span.http.response.status_code>=400}')
    return d


def database() -> Dash:
    d = Dash(
        "latch-database",
        "Latch / Database",
        ["latch", "database"],
        "Database calls by backend, from client span metrics: embedded SQLite (spin_sqlite.execute spans, "
        "db_system=sqlite) or SQLite Cloud (outbound HTTP spans to server_address). Only the configured backend has data.",
    )
    d.ds_var("prometheus", "Metrics", "prometheus")
    d.ds_var("tempo", "Traces", "tempo")
    d.textbox_var("webhook_host", "Email webhook host",
                  "The host of email_webhook_url (e.g. hooks.example.net). Its outbound calls are the email "
                  "webhook's, not the database's: the panels leave them out. Empty: every outbound call counts.")

    d.row("Calls")
    d.ts("Database calls per second by backend",
         "SQL statements per second (embedded SQLite) or HTTP requests per second to the SQLite Cloud host.",
         [(f"sum by (backend) ({by_backend(CALLS)})", "{{backend}}")], "ops", w=12)
    d.ts("Database error ratio by backend",
         "Share of database client spans with status ERROR. Embedded SQLite marks constraint violations as errors "
         "too (a duplicate sign-up is one), so a low background is normal; LatchDatabaseClientErrors fires above 10 %.",
         [(f"(sum by (backend) ({by_backend(CALLS, extra=DB_ERROR)})"
           f" or 0 * sum by (backend) ({by_backend(CALLS)}))"
           f" / sum by (backend) ({by_backend(CALLS)})", "{{backend}}")],
         "percentunit", [(0.1, "red")], w=12, max_=1, threshold_style="line")

    d.row("Latency (ms)")
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        d.ts(f"{name} database call latency by backend",
             f"{name} duration of one database client span (one statement or one HTTP round trip).",
             [(f"histogram_quantile({q}, sum by (backend, le) ({by_backend(DUR + '_bucket')}))", "{{backend}}", True)],
             "ms", [(100, "orange"), (1000, "red")], w=8, threshold_style="line")

    d.row("What users see")
    d.ts("503 answers per second by route (database unavailable)",
         "Database-backed routes answer 503 when the database cannot be reached; /ready answers 503 too, so "
         "the probe alone shows an outage with no user traffic. LatchDatabaseUnavailable fires above 5 %.",
         [(f"sum by (http_route) (rate({CALLS}{{{SERVER}, http_route!=\"/health\", http_response_status_code=\"503\"}}[$__rate_interval]))"
           f" or 0 * sum by (http_route) (rate({CALLS}{{{SERVER}, http_route!=\"/health\"}}[$__rate_interval]))", "{{http_route}}")],
         "reqps", w=12)
    d.ts("Database calls per request",
         "Average database client spans per server request (all routes). A jump after a release points at an N+1 query.",
         [(f"sum({by_backend(CALLS)}) / sum(rate({CALLS}{{{SERVER}}}[$__rate_interval]))", "calls per request")],
         "short", w=12)
    d._panel(
        "table", "Top 10 database operations by total time",
        "Embedded SQLite: the span name is the SQL text (bounded: Latch uses a fixed set of statements). "
        "SQLite Cloud: the span name is the HTTP method. Sorted by time spent per second.",
        24, 9,
        Dash.prom_targets([(f"topk(10, sum by (backend, span_name) ({by_backend(DUR + '_sum')}))", "")], instant=True),
        "ms", None, PROM, {"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Value", "desc": True}]},
        min_=None,
    )
    d.traces_table("Recent database errors (Tempo)",
                   "Traces with a failed database client span.",
                   '{resource.service.name="latch" && kind=client && status=error}')
    return d


def runtime() -> Dash:
    d = Dash(
        "latch-runtime",
        "Latch / Runtime",
        ["latch", "runtime"],
        "The Spin runtime: instances, requests per component (spin_request_count_total) and the memory each "
        "component instance uses (spin_component_memory_used_bytes histograms), plus guest execution time.",
    )
    d.ds_var("prometheus", "Metrics", "prometheus")
    d.query_var("component", "Component", 'label_values(spin_request_count_total{app_id="latch"}, component_id)')
    comp = 'component_id=~"$component"'

    d.row("Instances and requests")
    d.stat("Instances", "Runtime instances (pods) reporting: count of target_info series.",
           'count(target_info{service_name="latch"})', "none", decimals=0, w=6, h=8)
    d.ts("Instances over time", "Runtime instances reporting telemetry. Compare with the HPA's replica count on the Kubernetes dashboard.",
         [('count(target_info{service_name="latch"})', "instances")], "none", w=6)
    d.ts("Requests per second by component",
         "Requests handled by each component (Spin's spin.request_count counter).",
         [(f'sum by (component_id) (rate({SPIN_REQ}{{trigger_type="http", app_id="latch", {comp}}}[$__rate_interval]))',
           "{{component_id}}")], "reqps", w=12, stack=True)

    d.row("Component memory (linear memory of one instance, bytes)")
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        d.ts(f"{name} memory per instance by component",
             f"{name} of the memory one component instance used by the end of a request. Quantiles are only as "
             "fine as the histogram's buckets: if every observation falls above the largest finite bucket, the "
             "quantile shows that bucket's bound; the average panel below is exact.",
             [(f"histogram_quantile({q}, sum by (component_id, le) (rate({MEM}_bucket{{{comp}}}[$__rate_interval])))",
               "{{component_id}}")], "bytes", w=8)
    d.ts("Average memory per instance by component", "Exact average from the histogram's sum and count.",
         [(f"sum by (component_id) (rate({MEM}_sum{{{comp}}}[$__rate_interval])) / sum by (component_id) (rate({MEM}_count{{{comp}}}[$__rate_interval]))",
           "{{component_id}}")], "bytes", w=12)
    d.ts("Memory on instantiation by component (p95 and average)",
         "Memory a component instance holds right after instantiation, before handling the request.",
         [(f"histogram_quantile(0.95, sum by (component_id, le) (rate({MEM_INIT}_bucket{{{comp}}}[$__rate_interval])))",
           "p95 {{component_id}}"),
          (f"sum by (component_id) (rate({MEM_INIT}_sum{{{comp}}}[$__rate_interval])) / sum by (component_id) (rate({MEM_INIT}_count{{{comp}}}[$__rate_interval]))",
           "avg {{component_id}}")], "bytes", w=12)

    d.row("Guest execution (execute_wasm_component spans, ms)")
    exec_sel = f'{INTERNAL}, span_name=~"execute_wasm_component .+"'
    d.ts("p95 guest execution time by component",
         "Time inside the component (the execute_wasm_component child span). Compare with the route's server "
         "span latency: the difference is host work (routing, queueing, instantiation).",
         [(f'histogram_quantile(0.95, sum by (component, le) (label_replace(rate({DUR}_bucket{{{exec_sel}}}[$__rate_interval]), "component", "$1", "span_name", "execute_wasm_component (.+)")))',
           "{{component}}")], "ms", [(500, "orange"), (2000, "red")], w=12)
    d.ts("Guest executions per second by component", "Component executions per second, from the execute_wasm_component spans.",
         [(f'sum by (component) (label_replace(rate({CALLS}{{{exec_sel}}}[$__rate_interval]), "component", "$1", "span_name", "execute_wasm_component (.+)"))',
           "{{component}}")], "ops", w=12)
    return d


def kubernetes() -> Dash:
    d = Dash(
        "latch-kubernetes",
        "Latch / Kubernetes",
        ["latch", "kubernetes"],
        "Pods, restarts, CPU and memory against requests and limits, and the HPA of the SpinApp `latch` "
        "(Deployment latch, pods latch-<hash>-<id>). Needs kube-state-metrics and cAdvisor (kubelet) metrics.",
    )
    d.ds_var("prometheus", "Metrics", "prometheus")
    d.query_var("namespace", "Namespace", 'label_values(kube_deployment_status_replicas_available{deployment="latch"}, namespace)',
                multi=False, default="latch")
    d.query_var("hpa", "HPA", 'label_values(kube_horizontalpodautoscaler_spec_max_replicas{namespace="$namespace", horizontalpodautoscaler=~"latch.*"}, horizontalpodautoscaler)',
                all_value="latch.*")

    d.row("Replicas and autoscaling")
    d.stat("Available replicas", "Pods of Deployment latch that are available (ready for minReadySeconds).",
           'sum(kube_deployment_status_replicas_available{namespace="$namespace", deployment="latch"})', "none",
           [(0, "red"), (1, "green")], decimals=0, w=6)
    d.stat("HPA current replicas", "Replicas the HPA currently runs.",
           f"sum(kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}})", "none", decimals=0, w=6)
    d.stat("HPA desired replicas", "Replicas the HPA wants from the CPU/memory targets (capped at max).",
           f"sum(kube_horizontalpodautoscaler_status_desired_replicas{{{HPA}}})", "none", decimals=0, w=6)
    d.stat("HPA max replicas", "spec.maxReplicas. When current stays at max, LatchHPAMaxedOut fires.",
           f"sum(kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}})", "none", decimals=0, w=6)
    d.ts("HPA replicas", "Current, desired, min and max replicas of the HPA.",
         [(f"sum(kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}})", "current"),
          (f"sum(kube_horizontalpodautoscaler_status_desired_replicas{{{HPA}}})", "desired"),
          (f"sum(kube_horizontalpodautoscaler_spec_min_replicas{{{HPA}}})", "min"),
          (f"sum(kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}})", "max")], "none", w=12)
    d.ts("HPA conditions (1 = true)",
         "AbleToScale false or ScalingActive false: the HPA cannot act (LatchHPAUnableToScale). ScalingLimited "
         "true: the desired count was clamped to min or max.",
         [(f'max by (condition) (kube_horizontalpodautoscaler_status_condition{{{HPA}, status="true"}})', "{{condition}}")],
         "none", w=12, max_=1)

    d.row("Pods")
    d.ts("Pods by phase", "Latch pods per phase. Anything but Running for long fires LatchPodsNotRunning.",
         [(f"sum by (phase) (kube_pod_status_phase{{{K8S_POD}}})", "{{phase}}")], "none", w=8, stack=True)
    d.ts("Container restarts in the last hour by pod", "Restarts counted by kube-state-metrics. LatchPodRestarting fires on 2 restarts in 15 min.",
         [(f"sum by (pod) (increase(kube_pod_container_status_restarts_total{{{K8S_POD}}}[1h]))", "{{pod}}")],
         "none", [(1, "orange"), (3, "red")], w=8)
    d.ts("Containers waiting by reason", "CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError ...",
         [(f"sum by (reason) (kube_pod_container_status_waiting_reason{{{K8S_POD}}})", "{{reason}}")],
         "none", w=8)

    d.row("Resources (the pod's container is the Spin shim)")
    d.ts("CPU per pod against request and limit",
         "CPU seconds per second used by each pod's container, with the per-container request and limit. "
         "Flat near zero under load usually means the shim's cgroup is not accounted (SystemdCgroup = true missing).",
         [(f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{K8S_CONTAINER}}}[$__rate_interval]))", "{{pod}}"),
          (f'max(kube_pod_container_resource_requests{{{K8S_POD}, resource="cpu"}})', "request"),
          (f'max(kube_pod_container_resource_limits{{{K8S_POD}, resource="cpu"}})', "limit")],
         "short", w=12,
         overrides=[{"matcher": {"id": "byName", "options": n}, "properties": [
             {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
             {"id": "color", "value": {"mode": "fixed", "fixedColor": c}}]} for n, c in (("request", "orange"), ("limit", "red"))])
    d.ts("Memory working set per pod against request and limit",
         "Working set of each pod's container (what the OOM killer and the HPA memory target look at).",
         [(f"sum by (pod) (container_memory_working_set_bytes{{{K8S_CONTAINER}}})", "{{pod}}"),
          (f'max(kube_pod_container_resource_requests{{{K8S_POD}, resource="memory"}})', "request"),
          (f'max(kube_pod_container_resource_limits{{{K8S_POD}, resource="memory"}})', "limit")],
         "bytes", w=12,
         overrides=[{"matcher": {"id": "byName", "options": n}, "properties": [
             {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
             {"id": "color", "value": {"mode": "fixed", "fixedColor": c}}]} for n, c in (("request", "orange"), ("limit", "red"))])
    d.ts("CPU utilisation of request by pod (what the HPA scales on)",
         "CPU used divided by CPU requested, per pod. The HPA compares the average of this with its target.",
         [(f"sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{K8S_CONTAINER}}}[$__rate_interval]))"
           f' / sum by (namespace, pod) (kube_pod_container_resource_requests{{{K8S_POD}, resource="cpu"}})', "{{pod}}")],
         "percentunit", [(0.7, "orange"), (1, "red")], w=12, threshold_style="line")
    d.ts("Memory utilisation of limit by pod",
         "Working set divided by the memory limit, per pod. Near 100 % the container is OOM-killed.",
         [(f"sum by (namespace, pod) (container_memory_working_set_bytes{{{K8S_CONTAINER}}})"
           f' / sum by (namespace, pod) (kube_pod_container_resource_limits{{{K8S_POD}, resource="memory"}})', "{{pod}}")],
         "percentunit", [(0.8, "orange"), (0.95, "red")], w=12, max_=1, threshold_style="line")
    return d


DASHBOARDS = {
    "latch-service-overview.json": overview,
    "latch-auth-outcomes.json": auth,
    "latch-database.json": database,
    "latch-runtime.json": runtime,
    "latch-kubernetes.json": kubernetes,
}


def render(fn) -> str:
    return json.dumps(fn().to_json(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a committed dashboard differs from the generated one")
    args = ap.parse_args()
    stale = []
    for name, fn in DASHBOARDS.items():
        path = OUT_DIR / name
        text = render(fn)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(OUT_DIR.parent)}")
    if stale:
        print("stale dashboards (run python3 dashboards/src/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
