#!/usr/bin/env python3
"""Drive a scripted flow through every route of a running Latch and check every real
response against docs/openapi.yaml (scripts/checks/openapi.sh runs it).

Three instances, started by openapi.sh:
  --dev   development, cookie_secure=false, tokens in cookies only: every route and every
          error case a client can cause (validation, duplicates, lock-outs, reuse, 405,
          413, 415, malformed JSON, runtime 404 ...). It has no email webhook, so with
          --dev-log the recovery and verification links are read from its log (where
          development writes them): forgot, reset, verify and resend end to end,
          superseded, reused and racing tokens, the throttles. With --dev-data-dir the
          admin API too: an admin made with `latch admin grant` (--latch), every admin
          operation and its errors (403 admin_required and self_demotion, invalid_query,
          404), a pagination walk while users are added, disabling, demotion, the audit
          trail's acting admin
  --prod  production with a signing key and an older verification key, tokens_in_body=true,
          Secure cookies, behind_tls=true (HSTS): body tokens, refresh through a JSON body,
          two JWKS keys. With --webhook-port/--webhook-secret it also has
          require_verified_email=true and an email webhook received here: each delivery's
          Standard Webhooks signature and timestamp are checked with the standard library
          (not the sending code), the message against the contract, then sign-in's 403,
          verification and recovery with the delivered tokens
  --nokey production without a signing key or email webhook, behind_tls=true: the 503
          answers and the not-ready probe
  --nomfa production with a signing key but no mfa_encryption_key: the second-factor
          routes answer 503

The second factor runs on dev (TOTP codes computed here from RFC 6238, not by the
service's code): enrolment, confirmation, sign-in challenges, verification with a code
and with a recovery code, replays, step-up (aal2_required), new recovery codes, removal,
the shared lock-out, refresh keeping aal/amr, and with --dev-data-dir the admin view and
the audit trail; and on prod (with an mfa_encryption_key) with tokens in the body and,
with --prod-challenge-ttl, an expired challenge.

Each response is validated with openapi-core (status documented for the operation,
content type, required headers, body schema); a method a route does not answer is
validated against components.responses.MethodNotAllowed. On top of the schema, every
answer of a route is checked for what JSON Schema cannot say: the problem's old-service
members equal their RFC 9457 twins, `instance` is the path, `requestId` is the
X-Request-Id header, the fixed security headers, HSTS and the cookies' `Secure` exactly
when the deployment's cookies are Secure, each Set-Cookie's attributes, that access
tokens verify with the published JWKS, and that racing sign-ups, password changes or
password resets have exactly one winner. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import copy
import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

METHODS = ("get", "put", "post", "delete", "patch", "options", "head")
# What every answer of a route carries (crates/web/src/response.rs, `finish`).
FIXED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-resource-policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"
COOKIE_RE = re.compile(
    r"^(?P<name>token|refreshToken)=(?P<value>[^;]*); Max-Age=(?P<max_age>[0-9]+); Path=/; HttpOnly; "
    r"SameSite=Strict(?P<secure>; Secure)?(?P<expires>; Expires=Thu, 01 Jan 1970 00:00:00 GMT)?$"
)
PASSWORD = "correct horse battery staple 7"
NEW_PASSWORD = "a brand new passphrase 42"
# public_url of the instances: the default on dev, this on prod (openapi.sh sets it).
DEV_PUBLIC_URL = "http://localhost:3000"
PROD_PUBLIC_URL = "https://app.example.test"


_PRINT = threading.Lock()
_FAILURES = threading.Lock()


def say(line: str) -> None:
    """One line of progress, whole even when races print from several threads."""
    with _PRINT:
        print(line, flush=True)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Instance:
    name: str
    base: str
    secure_cookies: bool
    # behind_tls: the deployment says clients use HTTPS, so every answer carries HSTS.
    behind_tls: bool
    tokens_in_body: bool = False


@dataclass
class Report:
    checked: int = 0
    # message -> labels of the requests it happened on (one defect usually shows on many)
    failures: dict[str, list[str]] = field(default_factory=dict)
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def fail(self, label: str, message: str) -> None:
        with _FAILURES:
            labels = self.failures.setdefault(message, [])
            labels.append(label)
            if len(labels) > 1:
                return
        say(f"  FAIL {label}: {message}")

    def summary(self) -> list[str]:
        lines = []
        for message, labels in self.failures.items():
            shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")
            lines.append(f"{message}\n      on {len(labels)} response(s): {shown}")
        return lines


class Checker:
    def __init__(self, spec_path: str, report: Report) -> None:
        with open(spec_path, encoding="utf-8") as handle:
            self.spec = yaml.safe_load(handle)
        self.report = report
        # The same document plus, on every path, each method the path does not answer,
        # answering only components.responses.MethodNotAllowed. Documented operations are
        # untouched, so their statuses are checked exactly as written.
        derived = copy.deepcopy(self.spec)
        for template, item in derived["paths"].items():
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"\{([^}]+)\}", template)
            ]
            for method in METHODS:
                if method not in item and not (method == "head" and "get" in item):
                    item[method] = {
                        "parameters": params,
                        "responses": {"405": {"$ref": "#/components/responses/MethodNotAllowed"}},
                    }
        config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
        self.api = OpenAPI.from_dict(derived, config=config)
        self.templates = [
            (template, re.compile("^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template)) + "$"))
            for template in self.spec["paths"]
        ]

    def template_of(self, path: str) -> str | None:
        for template, pattern in self.templates:
            if pattern.match(path):
                return template
        return None

    def documented(self) -> set[tuple[str, str, str]]:
        pairs = set()
        for template, item in self.spec["paths"].items():
            for method, operation in item.items():
                if method in METHODS:
                    for status in operation["responses"]:
                        pairs.add((method.upper(), template, str(status)))
        return pairs

    # ----------------------------------------------------------------- one request

    def call(
        self,
        inst: Instance,
        label: str,
        method: str,
        path: str,
        expect: int | set[int],
        *,
        token: str | None = None,
        bearer: str | None = None,
        refresh: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        label = f"[{inst.name}] {label}"
        send = dict(headers or {})
        cookies = []
        if token is not None:
            cookies.append(f"token={token}")
        if refresh is not None:
            cookies.append(f"refreshToken={refresh}")
        if cookies:
            send["Cookie"] = "; ".join(cookies)
        if bearer is not None:
            send["Authorization"] = f"Bearer {bearer}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            send.setdefault("Content-Type", "application/json")
        elif raw is not None:
            data = raw
        if content_type is not None:
            send["Content-Type"] = content_type
        # A new connection and cookie jar per request: cookies are only ever sent explicitly,
        # and races below can run calls from several threads.
        response = requests.request(method, inst.base + path, data=data, headers=send, timeout=30)
        self.report.checked += 1
        status = response.status_code
        template = self.template_of(path.split("?")[0])
        if template is not None:
            self.report.seen.add((method.upper(), template, str(status)))
        say(f"  {status} {method} {path}  ({label})")
        if status not in (expect if isinstance(expect, set) else {expect}):
            self.report.fail(label, f"expected {expect}, got {status}: {response.text[:300]}")
        if template is None:
            return response
        if method.upper() == "HEAD" and "get" in self.spec["paths"][template]:
            self._check_head(inst, label, path, response, send)
        else:
            self._validate(label, response)
        self._route_invariants(inst, label, path, response)
        return response

    def _validate(self, label: str, response: requests.Response) -> None:
        errors = list(
            self.api.iter_response_errors(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
        )
        for error in errors:
            details = [str(error)]
            cause = error.__cause__
            while cause is not None:
                details.append(str(cause))
                for sub in getattr(cause, "schema_errors", ()) or ():
                    details.append(f"{'/'.join(map(str, sub.absolute_path)) or '<body>'}: {sub.message}")
                cause = cause.__cause__
            self.report.fail(label, "does not conform to the spec: " + " | ".join(details)[:1200])

    def _check_head(self, inst: Instance, label: str, path: str, head: requests.Response, sent: dict) -> None:
        """HEAD answers like GET with no body (not a documented operation of its own)."""
        get = requests.request("GET", inst.base + path, headers=sent, timeout=30)
        if head.content:
            self.report.fail(label, "HEAD answered with a body")
        if head.status_code != get.status_code:
            self.report.fail(label, f"HEAD {head.status_code} but GET {get.status_code}")
        for name in ("content-type", "cache-control", *FIXED_HEADERS):
            if head.headers.get(name) != get.headers.get(name):
                self.report.fail(label, f"HEAD and GET differ in {name}")

    def _route_invariants(self, inst: Instance, label: str, path: str, response: requests.Response) -> None:
        headers = response.headers
        request_id = headers.get("x-request-id")
        if request_id is None:
            # Only the runtime's own answers (413 over 1 MiB, 500 trap, 503 busy) lack it.
            if response.status_code not in (413, 500, 503):
                self.report.fail(label, "no X-Request-Id: only the runtime's own answers may lack it")
            return
        for name, value in FIXED_HEADERS.items():
            if headers.get(name) != value:
                self.report.fail(label, f"header {name} is {headers.get(name)!r}, expected {value!r}")
        hsts = headers.get("strict-transport-security")
        if inst.behind_tls and hsts != HSTS:
            self.report.fail(label, f"Strict-Transport-Security is {hsts!r} behind TLS (behind_tls=true)")
        if not inst.behind_tls and hsts is not None:
            self.report.fail(label, "Strict-Transport-Security sent although the deployment is not behind TLS")
        for cookie in response.raw.headers.getlist("Set-Cookie"):
            match = COOKIE_RE.match(cookie)
            if match is None:
                self.report.fail(label, f"Set-Cookie does not have the documented form: {cookie[:120]}")
                continue
            if bool(match["secure"]) != inst.secure_cookies:
                self.report.fail(
                    label,
                    f"cookie {match['name']} {'has' if match['secure'] else 'lacks'} Secure but the deployment's "
                    f"cookies are {'Secure' if inst.secure_cookies else 'not Secure (cookie_secure=false)'}",
                )
            cleared = match["value"] == ""
            if cleared != (match["max_age"] == "0") or cleared != bool(match["expires"]):
                self.report.fail(label, f"cookie {match['name']}: a cleared cookie has Max-Age=0 and Expires, no other")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                self.report.fail(label, "the problem body is not JSON")
                return
            pairs = [("statusCode", "status"), ("error", "title"), ("message", "detail")]
            for old, new in pairs:
                if problem.get(old) != problem.get(new):
                    self.report.fail(label, f"problem member {old} differs from {new}")
            if problem.get("status") != response.status_code:
                self.report.fail(label, "problem status differs from the HTTP status")
            if "instance" in problem and problem["instance"] != path.split("?")[0]:
                self.report.fail(label, f"problem instance {problem['instance']!r} is not the path")
            if "requestId" in problem and problem["requestId"] != request_id:
                self.report.fail(label, "problem requestId differs from the X-Request-Id header")
        if response.status_code == 405 and "allow" not in headers:
            self.report.fail(label, "405 without Allow")

    # ----------------------------------------------------------------- helpers

    def cookies_of(self, label: str, response: requests.Response, *, cleared: bool) -> dict[str, str]:
        found = {}
        for cookie in response.raw.headers.getlist("Set-Cookie"):
            match = COOKIE_RE.match(cookie)
            if match:
                found[match["name"]] = (match["value"], match["max_age"])
        if set(found) != {"token", "refreshToken"}:
            self.report.fail(label, f"expected both token cookies, got {sorted(found)}")
            return {}
        # The instances run with the default lifetimes: 15 minutes and 7 days.
        lifetimes = {"token": "900", "refreshToken": "604800"}
        for name, (value, max_age) in found.items():
            if cleared != (value == ""):
                self.report.fail(label, f"cookie {name} should be {'cleared' if cleared else 'set'}")
            elif not cleared and max_age != lifetimes[name]:
                self.report.fail(label, f"cookie {name} has Max-Age={max_age}, expected {lifetimes[name]}")
        return {name: value for name, (value, _) in found.items()}

    def check_access_token(
        self, label: str, token: str, jwks: dict, user_id: str, ttl: int = 900, verified: bool | None = None,
        amr: tuple[str, ...] = ("pwd",),
    ) -> dict:
        """The token verifies with the JWKS and has exactly the documented claims; `amr` is
        how its session signed in (`aal` follows: aal2 with a second factor)."""
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            header = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(claims_b64))
        except ValueError as error:
            self.report.fail(label, f"the access token is not a compact JWS: {error}")
            return {}
        if header != {"alg": "EdDSA", "typ": "JWT", "kid": header.get("kid")}:
            self.report.fail(label, f"unexpected JWT header {header}")
        keys = {key["kid"]: key for key in jwks.get("keys", [])}
        key = keys.get(header.get("kid"))
        if key is None:
            self.report.fail(label, f"the token's kid {header.get('kid')!r} is not in the JWKS")
            return claims
        try:
            Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"])).verify(
                b64url_decode(sig_b64), f"{head_b64}.{claims_b64}".encode()
            )
        except (InvalidSignature, ValueError):
            self.report.fail(label, "the access token does not verify with its JWKS key")
        expected = {"iss", "aud", "sub", "sid", "roles", "email_verified", "aal", "amr", "iat", "exp", "typ"}
        if set(claims) != expected:
            self.report.fail(label, f"access token claims {sorted(claims)}, expected {sorted(expected)}")
        aal = "aal1" if amr == ("pwd",) else "aal2"
        if (claims.get("aal"), claims.get("amr")) != (aal, list(amr)):
            self.report.fail(label, f"aal/amr {claims.get('aal')!r}/{claims.get('amr')!r}, expected {aal}/{list(amr)}")
        if not isinstance(claims.get("email_verified"), bool):
            self.report.fail(label, "access token claim email_verified is not a boolean")
        elif verified is not None and claims["email_verified"] is not verified:
            self.report.fail(label, f"access token claim email_verified is {claims['email_verified']}, expected {verified}")
        if claims.get("typ") != "access" or claims.get("sub") != user_id or claims.get("roles") != ["user"]:
            self.report.fail(label, f"unexpected access token claims {claims}")
        if claims.get("exp", 0) - claims.get("iat", 0) != ttl:
            self.report.fail(label, "access token lifetime is not the configured one")
        return claims


# --------------------------------------------------------------------- email messages

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
RFC3339_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$")
LINK_PATHS = {"recovery": "/reset-password", "verification": "/verify-email"}
# What forgot answers, whatever the address (the contract: one body for all).
FORGOT_MESSAGE = "If an account exists for this address, a recovery link is on its way"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def new_request_id(tag: str) -> str:
    return f"flow-{tag}-{uuid.uuid4().hex[:12]}"


class WebhookReceiver:
    """The email webhook of the production instance: a Standard Webhooks receiver on
    loopback that checks every delivery on its own (standard library HMAC-SHA256 over
    `<webhook-id>.<webhook-timestamp>.<body>` with the secret's key, the id's form, a
    timestamp within 5 minutes), answers 204 or 401, and keeps what it accepted and why
    it refused the rest."""

    TOLERANCE = 300

    def __init__(self, port: int, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.accepted: list[dict] = []
        self.refused: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                reason = receiver.check(self.headers, body)
                with receiver.changed:
                    if reason is None:
                        receiver.accepted.append(json.loads(body))
                    else:
                        receiver.refused.append(reason)
                    receiver.changed.notify_all()
                self.send_response(204 if reason is None else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def check(self, headers: Any, body: bytes) -> str | None:
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not re.fullmatch(r"msg_[A-Za-z0-9_-]{22}", msg_id):
            return f"webhook-id {msg_id[:40]!r} is not msg_<22 url-safe characters>"
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.TOLERANCE:
            return f"webhook-timestamp {timestamp[:20]!r} is not within {self.TOLERANCE} s of now"
        if (headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            return f"content-type {headers.get('content-type')!r}"
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                try:
                    json.loads(body)
                except ValueError:
                    return "the body is not JSON"
                return None
        return "no v1 signature matches"

    def wait_for(self, request_id: str, timeout: float = 10.0) -> dict | None:
        """The accepted message sent for the API call with this request id."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for message in self.accepted:
                    if message.get("data", {}).get("requestId") == request_id:
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


class DevLog:
    """The development instance's log: with no email_webhook_url, each message's link is
    logged there (`"outcome":"logged"`, marked DEVELOPMENT ONLY) instead of being sent."""

    def __init__(self, path: str) -> None:
        self.path = path

    def messages(self) -> list[dict]:
        found = []
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return []
        decoder = json.JSONDecoder()
        for line in lines:
            line = ANSI_RE.sub("", line)
            if "email_delivery" not in line:
                continue
            start = line.find("] {")
            if start < 0:
                continue
            try:
                record, _ = decoder.raw_decode(line, start + 2)
            except ValueError:
                continue
            if record.get("event") == "email_delivery" and record.get("outcome") == "logged":
                found.append(record)
        return found

    def mark(self) -> int:
        """How many links are logged so far (call before the request)."""
        return len(self.messages())

    def wait_for(self, request_id: str, kind: str, mark: int, timeout: float = 10.0) -> dict | None:
        """The link logged for the call with this request id: the line naming that
        request id, or, in a line without one, the first of its kind after `mark`."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.messages()[mark:]:
                if record.get("kind") != kind:
                    continue
                if record.get("request_id", request_id) == request_id:
                    return record
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


def token_of_link(link: str, kind: str, public_url: str) -> str | None:
    prefix = f"{public_url}{LINK_PATHS[kind]}?token="
    if not link.startswith(prefix) or not TOKEN_RE.match(link[len(prefix):]):
        return None
    return link[len(prefix):]


def check_message(c: Checker, label: str, message: dict | None, *, kind: str, to: str, request_id: str,
                  public_url: str, ttl: int) -> str:
    """A webhook message against the contract; returns its token ("" when unusable)."""
    if message is None:
        c.report.fail(label, f"no {kind} message for request {request_id} within 10 s")
        return ""
    data = message.get("data", {})
    if set(message) != {"type", "timestamp", "data"} or message.get("type") != f"email.{kind}":
        c.report.fail(label, f"message members {sorted(message)} or type {message.get('type')!r}")
    if set(data) != {"kind", "to", "token", "link", "expiresAt", "requestId"}:
        c.report.fail(label, f"message data members {sorted(data)}")
    if data.get("kind") != kind or data.get("to") != to.strip().lower():
        c.report.fail(label, f"kind {data.get('kind')!r} / to {data.get('to')!r}, expected {kind} / {to.lower()}")
    token = data.get("token", "")
    if not TOKEN_RE.match(token):
        c.report.fail(label, "the token is not 43 url-safe characters")
        return ""
    if data.get("link") != f"{public_url}{LINK_PATHS[kind]}?token={token}":
        c.report.fail(label, f"link {data.get('link')!r} is not <public_url>{LINK_PATHS[kind]}?token=<token>")
    for member in (message.get("timestamp", ""), data.get("expiresAt", "")):
        if not RFC3339_RE.match(str(member)):
            c.report.fail(label, f"{member!r} is not an RFC 3339 UTC time")
            return token
    sent = calendar.timegm(time.strptime(message["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
    expires = calendar.timegm(time.strptime(data["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S"))
    if abs(expires - sent - ttl) > 5:
        c.report.fail(label, f"expiresAt is {expires - sent:.0f} s after the message, expected {ttl}")
    return token


# --------------------------------------------------------------------- scenarios


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@Example.COM"


def signup(c: Checker, inst: Instance, email: str, password: str = PASSWORD, name: str = "Ada Lovelace",
           request_id: str | None = None) -> str:
    response = c.call(inst, "sign-up", "POST", "/auth/signup", 201,
                      body={"email": email, "password": password, "fullName": name},
                      headers={"X-Request-Id": request_id} if request_id else None)
    return response.json().get("userId", "") if response.status_code == 201 else ""


def signin(c: Checker, inst: Instance, email: str, password: str = PASSWORD, label: str = "sign-in") -> dict:
    response = c.call(inst, label, "POST", "/auth/signin", 200, body={"email": email, "password": password},
                      headers={"User-Agent": "openapi-flow/1"})
    if response.status_code != 200:
        return {}
    cookies = c.cookies_of(label, response, cleared=False)
    body = response.json()
    if inst.tokens_in_body:
        if body.get("accessToken") != cookies.get("token") or body.get("refreshToken") != cookies.get("refreshToken"):
            c.report.fail(f"[{inst.name}] {label}", "body tokens differ from the cookies")
    elif "accessToken" in body:
        c.report.fail(f"[{inst.name}] {label}", "tokens in the body although tokens_in_body=false")
    return {"access": cookies.get("token", ""), "refresh": cookies.get("refreshToken", ""), "body": body}


def flow_dev(c: Checker, inst: Instance) -> dict[str, str]:
    """Every route and error case on the development instance; returns tokens of fresh
    sessions for schemathesis."""
    big = b'{"email":"' + b"a" * (17 * 1024) + b'"}'
    huge = b"{" + b" " * (1024 * 1024 + 10) + b"}"

    # operations probes
    c.call(inst, "health", "GET", "/health", 200)
    c.call(inst, "health HEAD", "HEAD", "/health", 200)
    c.call(inst, "health wrong method", "DELETE", "/health", 405)
    c.call(inst, "ready", "GET", "/ready", 200)
    c.call(inst, "ready wrong method", "POST", "/ready", 405)
    jwks = c.call(inst, "jwks", "GET", "/.well-known/jwks.json", 200).json()
    c.call(inst, "jwks wrong method", "PUT", "/.well-known/jwks.json", 405, body={})

    # X-Request-Id: a sane one is echoed, another is replaced
    echoed = c.call(inst, "request id echoed", "GET", "/health", 200, headers={"X-Request-Id": "client-req.42_a"})
    if echoed.headers.get("x-request-id") != "client-req.42_a":
        c.report.fail("[dev] request id echoed", "a sane X-Request-Id was not echoed")
    replaced = c.call(inst, "request id replaced", "POST", "/auth/signup", 415,
                      raw=b"x", content_type="text/plain", headers={"X-Request-Id": "not ok!"})
    if replaced.headers.get("x-request-id") in (None, "not ok!"):
        c.report.fail("[dev] request id replaced", "an unacceptable X-Request-Id was echoed or dropped")

    # sign-up
    email = unique_email("ada")
    user_id = signup(c, inst, email)
    c.call(inst, "sign-up duplicate (other case)", "POST", "/auth/signup", 409,
           body={"email": email.upper(), "password": PASSWORD, "fullName": "Ada Again"})
    bad = c.call(inst, "sign-up invalid fields", "POST", "/auth/signup", 400,
                 body={"email": "not-an-email", "password": "short", "fullName": "A"})
    codes = [(e["field"], e["code"]) for e in bad.json().get("errors", [])]
    if codes != [("email", "invalid"), ("password", "too_short"), ("fullName", "too_short")]:
        c.report.fail("[dev] sign-up invalid fields", f"errors[] {codes}")
    missing = c.call(inst, "sign-up missing fields", "POST", "/auth/signup", 400, body={})
    if [e["code"] for e in missing.json().get("errors", [])] != ["required"] * 3:
        c.report.fail("[dev] sign-up missing fields", "expected three `required` errors")
    for label, payload, expected in [
        ("sign-up common password", {"password": "password123"}, ("password", "common_password")),
        ("sign-up password too long", {"password": "x" * 129}, ("password", "too_long")),
        ("sign-up name too long", {"fullName": "n" * 101}, ("fullName", "too_long")),
        ("sign-up name control characters", {"fullName": "Ada\u202eL"}, ("fullName", "invalid_characters")),
        ("sign-up email too long", {"email": "a" * 64 + "@" + "b" * 200 + ".com"}, ("email", "too_long")),
        ("sign-up email non-ASCII", {"email": "zoë@example.com"}, ("email", "invalid_characters")),
    ]:
        sent = {"email": unique_email("v"), "password": PASSWORD, "fullName": "Valid Name", **payload}
        answer = c.call(inst, label, "POST", "/auth/signup", 400, body=sent)
        got = [(e["field"], e["code"]) for e in answer.json().get("errors", [])]
        if got != [expected]:
            c.report.fail(f"[dev] {label}", f"errors[] {got}, expected {[expected]}")
    c.call(inst, "sign-up malformed JSON", "POST", "/auth/signup", 400, raw=b'{"email":', content_type="application/json")
    c.call(inst, "sign-up wrong type", "POST", "/auth/signup", 400, body={"email": 1})
    c.call(inst, "sign-up JSON null", "POST", "/auth/signup", 400, raw=b"null", content_type="application/json")
    c.call(inst, "sign-up wrong content type", "POST", "/auth/signup", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "sign-up no content type", "POST", "/auth/signup", 415, raw=b"{}")
    c.call(inst, "sign-up +json content type", "POST", "/auth/signup", 400, raw=b"{}",
           content_type="application/merge-patch+json; charset=utf-8")
    c.call(inst, "sign-up body over 16 KiB", "POST", "/auth/signup", 413, raw=big, content_type="application/json")
    c.call(inst, "sign-up body over 1 MiB (runtime)", "POST", "/auth/signup", 413, raw=huge,
           content_type="application/json")
    c.call(inst, "sign-up wrong method", "GET", "/auth/signup", 405)

    # concurrent sign-ups with one email (in two spellings): exactly one account
    raced = unique_email("race")
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(
            lambda i: c.call(inst, f"sign-up race {i}", "POST", "/auth/signup", {201, 409},
                             body={"email": raced if i % 2 else raced.lower(), "password": PASSWORD,
                                   "fullName": "Race Condition"}).status_code,
            range(6)))
    if sorted(statuses) != [201, 409, 409, 409, 409, 409]:
        c.report.fail("[dev] sign-up race", f"statuses {sorted(statuses)}: expected one 201, the rest 409")

    # sign-in
    c.call(inst, "sign-in wrong password", "POST", "/auth/signin", 401, body={"email": email, "password": "wrong-password"})
    c.call(inst, "sign-in unknown email", "POST", "/auth/signin", 401,
           body={"email": unique_email("nobody"), "password": PASSWORD})
    c.call(inst, "sign-in empty password", "POST", "/auth/signin", 401, body={"email": email, "password": ""})
    c.call(inst, "sign-in missing password", "POST", "/auth/signin", 400, body={"email": email})
    c.call(inst, "sign-in invalid email", "POST", "/auth/signin", 400, body={"email": "nope", "password": PASSWORD})
    c.call(inst, "sign-in malformed JSON", "POST", "/auth/signin", 400, raw=b"{", content_type="application/json")
    c.call(inst, "sign-in wrong content type", "POST", "/auth/signin", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "sign-in body over 16 KiB", "POST", "/auth/signin", 413, raw=big, content_type="application/json")
    c.call(inst, "sign-in wrong method", "GET", "/auth/signin", 405)
    first = signin(c, inst, email.lower(), label="sign-in (email in another case)")
    claims = c.check_access_token("[dev] sign-in access token", first.get("access", ""), jwks, user_id)
    user = first.get("body", {}).get("user", {})
    if user != {"id": user_id, "email": email.lower(), "fullName": "Ada Lovelace"}:
        c.report.fail("[dev] sign-in", f"user {user}")

    # lock-out: 5 failures lock the account; then even the right password gets 429
    victim = unique_email("locked")
    signup(c, inst, victim)
    for attempt in range(1, 6):
        c.call(inst, f"lock-out failure {attempt}", "POST", "/auth/signin", 401,
               body={"email": victim, "password": "wrong-password"})
    locked = c.call(inst, "lock-out refuses the right password", "POST", "/auth/signin", 429,
                    body={"email": victim, "password": PASSWORD})
    retry_after = int(locked.headers.get("retry-after", "0") or 0)
    if not 1 <= retry_after <= 60:
        c.report.fail("[dev] lock-out", f"Retry-After {retry_after}, expected 1..60")

    # profile
    access = first.get("access", "")
    c.call(inst, "profile (cookie)", "GET", "/user/profile", 200, token=access)
    c.call(inst, "profile HEAD", "HEAD", "/user/profile", 200, token=access)
    profile = c.call(inst, "profile (bearer)", "GET", "/user/profile", 200, bearer=access).json().get("user", {})
    if profile.get("id") != user_id or profile.get("email") != email.lower() or profile.get("isActive") is not True:
        c.report.fail("[dev] profile", f"unexpected profile {profile}")
    c.call(inst, "profile without token", "GET", "/user/profile", 401)
    c.call(inst, "profile garbage token", "GET", "/user/profile", 401, bearer="not.a.token")
    c.call(inst, "profile Basic scheme", "GET", "/user/profile", 401, headers={"Authorization": "Basic YTpi"})
    c.call(inst, "profile refresh token as access token", "GET", "/user/profile", 401, bearer=first.get("refresh", ""))
    forged = access.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(b"\0" * 64).rstrip(b"=").decode()
    c.call(inst, "profile forged signature", "GET", "/user/profile", 401, bearer=forged)
    updated = c.call(inst, "profile update fullName", "PUT", "/user/profile", 200, bearer=access,
                     body={"fullName": "  Ada King  "}).json()
    if updated.get("user", {}).get("fullName") != "Ada King":
        c.report.fail("[dev] profile update", "fullName not trimmed/stored")
    c.call(inst, "profile update old `name`", "PUT", "/user/profile", 200, token=access, body={"name": "Ada Byron"})
    c.call(inst, "profile update missing name", "PUT", "/user/profile", 400, bearer=access, body={})
    c.call(inst, "profile update too short", "PUT", "/user/profile", 400, bearer=access, body={"fullName": " A "})
    c.call(inst, "profile update without token", "PUT", "/user/profile", 401, body={"fullName": "Ada"})
    c.call(inst, "profile update wrong content type", "PUT", "/user/profile", 415, bearer=access,
           raw=b"name=x", content_type="application/x-www-form-urlencoded")
    c.call(inst, "profile update malformed JSON", "PUT", "/user/profile", 400, bearer=access,
           raw=b"[1,", content_type="application/json")
    c.call(inst, "profile update over 16 KiB", "PUT", "/user/profile", 413, bearer=access, raw=big,
           content_type="application/json")
    c.call(inst, "profile wrong method", "POST", "/user/profile", 405, bearer=access)

    # sessions
    second = signin(c, inst, email, label="sign-in (second session)")
    listed = c.call(inst, "sessions list", "GET", "/auth/sessions", 200, bearer=access).json().get("sessions", [])
    current = [s for s in listed if s.get("current")]
    if len(listed) != 2 or len(current) != 1 or current[0].get("id") != claims.get("sid"):
        c.report.fail("[dev] sessions list", f"expected 2 sessions, the current one first-session: {listed}")
    if any(s.get("userAgent") != "openapi-flow/1" or s.get("clientIp") != "127.0.0.1" for s in listed):
        c.report.fail("[dev] sessions list", "userAgent/clientIp not recorded")
    c.call(inst, "sessions HEAD", "HEAD", "/auth/sessions", 200, bearer=access)
    c.call(inst, "sessions without token", "GET", "/auth/sessions", 401)
    c.call(inst, "sessions wrong method", "POST", "/auth/sessions", 405, bearer=access)
    other = next((s["id"] for s in listed if not s.get("current")), "AAAAAAAAAAAAAAAAAAAAAA")
    c.call(inst, "session revoke", "DELETE", f"/auth/sessions/{other}", 204, bearer=access)
    c.call(inst, "session revoke again", "DELETE", f"/auth/sessions/{other}", 404, bearer=access)
    c.call(inst, "session revoke malformed id", "DELETE", "/auth/sessions/not-an-id", 404, bearer=access)
    c.call(inst, "session revoke without token", "DELETE", f"/auth/sessions/{other}", 401)
    c.call(inst, "session wrong method", "GET", f"/auth/sessions/{other}", 405, bearer=access)
    ended = c.call(inst, "revoked session's token", "GET", "/user/profile", 401, bearer=second.get("access", ""))
    c.cookies_of("[dev] revoked session's token", ended, cleared=True)
    c.call(inst, "revoked session's refresh token", "POST", "/auth/refresh", 401, refresh=second.get("refresh", ""))

    # refresh: rotation, then reuse revokes the session
    rotated = c.call(inst, "refresh", "POST", "/auth/refresh", 200, refresh=first.get("refresh", ""))
    new = c.cookies_of("[dev] refresh", rotated, cleared=False)
    if new.get("refreshToken") == first.get("refresh"):
        c.report.fail("[dev] refresh", "the refresh token was not rotated")
    c.check_access_token("[dev] refreshed access token", new.get("token", ""), jwks, user_id)
    reused = c.call(inst, "refresh reuse", "POST", "/auth/refresh", 401, refresh=first.get("refresh", ""))
    c.cookies_of("[dev] refresh reuse", reused, cleared=True)
    c.call(inst, "refresh after reuse (session revoked)", "POST", "/auth/refresh", 401, refresh=new.get("refreshToken", ""))
    c.call(inst, "profile after reuse (session revoked)", "GET", "/user/profile", 401, bearer=new.get("token", ""))
    c.call(inst, "refresh without cookie", "POST", "/auth/refresh", 401)
    c.call(inst, "refresh garbage", "POST", "/auth/refresh", 401, refresh="garbage")
    c.call(inst, "refresh with the access token", "POST", "/auth/refresh", 401, refresh=new.get("token", "x"))
    c.call(inst, "refresh body ignored (tokens_in_body=false)", "POST", "/auth/refresh", 401,
           body={"refreshToken": first.get("refresh", "")})
    c.call(inst, "refresh wrong method", "GET", "/auth/refresh", 405)

    # password change
    pw_email = unique_email("pw")
    pw_user = signup(c, inst, pw_email)
    keep = signin(c, inst, pw_email, label="sign-in (password change, kept)")
    other_session = signin(c, inst, pw_email, label="sign-in (password change, other)")
    bearer = keep.get("access", "")
    c.call(inst, "password wrong current", "POST", "/auth/password", 403, bearer=bearer,
           body={"currentPassword": "not-it", "newPassword": NEW_PASSWORD})
    common = c.call(inst, "password common new", "POST", "/auth/password", 400, bearer=bearer,
                    body={"currentPassword": PASSWORD, "newPassword": "qwertyuiop"})
    if [(e["field"], e["code"]) for e in common.json().get("errors", [])] != [("newPassword", "common_password")]:
        c.report.fail("[dev] password common new", "expected newPassword/common_password")
    c.call(inst, "password missing fields", "POST", "/auth/password", 400, bearer=bearer, body={})
    c.call(inst, "password new too short", "POST", "/auth/password", 400, bearer=bearer,
           body={"currentPassword": PASSWORD, "newPassword": "short"})
    c.call(inst, "password without token", "POST", "/auth/password", 401,
           body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    c.call(inst, "password wrong content type", "POST", "/auth/password", 415, bearer=bearer, raw=b"x",
           content_type="text/plain")
    c.call(inst, "password over 16 KiB", "POST", "/auth/password", 413, bearer=bearer, raw=big,
           content_type="application/json")
    c.call(inst, "password wrong method", "GET", "/auth/password", 405)
    c.call(inst, "password change", "POST", "/auth/password", 200, token=bearer,
           body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    c.call(inst, "password: other session revoked", "GET", "/auth/sessions", 401, bearer=other_session.get("access", ""))
    c.call(inst, "password: own session kept", "GET", "/user/profile", 200, bearer=bearer)
    c.call(inst, "password: old one refused", "POST", "/auth/signin", 401, body={"email": pw_email, "password": PASSWORD})
    # concurrent changes with the right current password: one wins; the others lose the
    # race (409) or already see the new password (403)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(
            lambda i: c.call(inst, f"password change race {i}", "POST", "/auth/password", {200, 403, 409},
                             bearer=bearer, body={"currentPassword": NEW_PASSWORD,
                                                  "newPassword": f"{NEW_PASSWORD} v{i}"}).status_code,
            range(4)))
    if statuses.count(200) != 1:
        c.report.fail("[dev] password change race", f"statuses {statuses}: expected exactly one 200")
    winner = f"{NEW_PASSWORD} v{statuses.index(200)}" if 200 in statuses else NEW_PASSWORD
    # the race's losers were counted against the current-password check; a successful
    # change clears the counter, so the guesses below start from zero
    c.call(inst, "password change after the race", "POST", "/auth/password", 200, bearer=bearer,
           body={"currentPassword": winner, "newPassword": NEW_PASSWORD})
    renewed = signin(c, inst, pw_email, NEW_PASSWORD, label="sign-in with the new password")
    c.check_access_token("[dev] new-password access token", renewed.get("access", ""), jwks, pw_user)
    # the current-password check is throttled like sign-in: 5 wrong, then 429
    for attempt in range(1, 6):
        c.call(inst, f"password guess {attempt}", "POST", "/auth/password", 403, bearer=bearer,
               body={"currentPassword": f"guess-{attempt}", "newPassword": PASSWORD})
    c.call(inst, "password guessing locked", "POST", "/auth/password", 429, bearer=bearer,
           body={"currentPassword": NEW_PASSWORD, "newPassword": PASSWORD})

    # sign-out
    out = c.call(inst, "sign-out", "POST", "/auth/signout", 200, token=renewed.get("access", ""))
    c.cookies_of("[dev] sign-out", out, cleared=True)
    again = c.call(inst, "sign-out again", "POST", "/auth/signout", 401, bearer=renewed.get("access", ""))
    c.cookies_of("[dev] sign-out again", again, cleared=True)
    c.call(inst, "sign-out without token", "POST", "/auth/signout", 401)
    c.call(inst, "refresh after sign-out", "POST", "/auth/refresh", 401, refresh=renewed.get("refresh", ""))
    c.call(inst, "sign-out wrong method", "GET", "/auth/signout", 405)

    # paths that match no route: the runtime's empty 404
    for path in ("/nope", "/auth/signin/", "/user"):
        response = requests.get(inst.base + path, timeout=30)
        c.report.checked += 1
        say(f"  {response.status_code} GET {path}  ([dev] no route)")
        if response.status_code != 404 or response.content:
            c.report.fail(f"[dev] no route {path}", f"expected an empty 404, got {response.status_code}")

    # fresh sessions for schemathesis: one whose access token it uses everywhere, one
    # whose refresh token it presents (so one refresh succeeds before reuse revokes it)
    fuzz_email = unique_email("fuzz")
    signup(c, inst, fuzz_email)
    access = signin(c, inst, fuzz_email, label="sign-in (schemathesis access token)").get("access", "")
    refresh = signin(c, inst, fuzz_email, label="sign-in (schemathesis refresh token)").get("refresh", "")
    return {"dev_access": access, "dev_refresh": refresh}


def dev_link(c: Checker, inst: Instance, log: DevLog, label: str, kind: str, request_id: str, mark: int) -> str:
    """The token of the link the development instance logged for a request."""
    record = log.wait_for(request_id, kind, mark)
    if record is None:
        c.report.fail(f"[{inst.name}] {label}", f"no {kind} link logged for request {request_id} within 10 s")
        return ""
    if "DEVELOPMENT ONLY" not in str(record.get("note", "")) or record.get("level") != "warn":
        c.report.fail(f"[{inst.name}] {label}", f"the logged link is not a warning marked DEVELOPMENT ONLY: {record}")
    token = token_of_link(str(record.get("link", "")), kind, DEV_PUBLIC_URL)
    if token is None:
        c.report.fail(f"[{inst.name}] {label}", f"logged link {record.get('link')!r} is not "
                      f"{DEV_PUBLIC_URL}{LINK_PATHS[kind]}?token=<43 characters>")
        return ""
    return token


def invalid_token(c: Checker, inst: Instance, label: str, path: str, body: dict) -> None:
    """A one-time token the route must refuse with 400 and `code: invalid_token`."""
    answer = c.call(inst, label, "POST", path, 400, body=body)
    if answer.headers.get("content-type", "").startswith("application/problem+json"):
        code = answer.json().get("code")
        if code != "invalid_token":
            c.report.fail(f"[{inst.name}] {label}", f"code {code!r}, expected invalid_token")


def forgot(c: Checker, inst: Instance, label: str, email: str, request_id: str) -> requests.Response:
    answer = c.call(inst, label, "POST", "/auth/password/forgot", 202, body={"email": email},
                    headers={"X-Request-Id": request_id})
    if answer.status_code == 202 and answer.json() != {"message": FORGOT_MESSAGE}:
        c.report.fail(f"[{inst.name}] {label}", f"body {answer.text[:200]}")
    return answer


def flow_email_dev(c: Checker, inst: Instance, log: DevLog) -> None:
    """Account recovery and email verification on the development instance, which has no
    email_webhook_url: the links are read from its log."""
    jwks = c.call(inst, "jwks (email flows)", "GET", "/.well-known/jwks.json", 200).json()
    big = b'{"email":"' + b"a" * (17 * 1024) + b'"}'

    # verification: sign-up sends a link; resend replaces it; verify marks the address
    email = unique_email("verify")
    rid, mark = new_request_id("signup"), log.mark()
    user_id = signup(c, inst, email, request_id=rid)
    first_token = dev_link(c, inst, log, "sign-up verification link", "verification", rid, mark)
    session = signin(c, inst, email, label="sign-in (unverified)")
    access = session.get("access", "")
    c.check_access_token("[dev] unverified access token", access, jwks, user_id, verified=False)
    profile = c.call(inst, "profile (unverified)", "GET", "/user/profile", 200, bearer=access).json()
    if profile.get("user", {}).get("emailVerified") is not False:
        c.report.fail("[dev] profile (unverified)", "emailVerified is not false")
    rid, mark = new_request_id("resend"), log.mark()
    resent = c.call(inst, "resend", "POST", "/auth/email/verify/resend", 202, bearer=access,
                    headers={"X-Request-Id": rid})
    if resent.status_code == 202 and resent.json() != {"message": "Verification email sent"}:
        c.report.fail("[dev] resend", f"body {resent.text[:200]}")
    second_token = dev_link(c, inst, log, "resend verification link", "verification", rid, mark)
    if first_token and first_token == second_token:
        c.report.fail("[dev] resend", "the resent token is the sign-up's")
    invalid_token(c, inst, "verify superseded token", "/auth/email/verify", {"token": first_token or "A" * 43})
    invalid_token(c, inst, "verify unknown token", "/auth/email/verify",
                  {"token": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).rstrip(b"=").decode()})
    invalid_token(c, inst, "verify malformed token", "/auth/email/verify", {"token": "not a token"})
    c.call(inst, "verify missing token", "POST", "/auth/email/verify", 400, body={})
    c.call(inst, "verify token of the wrong type", "POST", "/auth/email/verify", 400, body={"token": 7})
    c.call(inst, "verify malformed JSON", "POST", "/auth/email/verify", 400, raw=b"{", content_type="application/json")
    c.call(inst, "verify wrong content type", "POST", "/auth/email/verify", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "verify over 16 KiB", "POST", "/auth/email/verify", 413, raw=big, content_type="application/json")
    c.call(inst, "verify wrong method", "GET", "/auth/email/verify", 405)
    verified = c.call(inst, "verify", "POST", "/auth/email/verify", 200, body={"token": second_token or "A" * 43})
    if verified.status_code == 200 and verified.json() != {"message": "Email address verified", "emailVerified": True}:
        c.report.fail("[dev] verify", f"body {verified.text[:200]}")
    invalid_token(c, inst, "verify the same token again", "/auth/email/verify", {"token": second_token or "A" * 43})
    profile = c.call(inst, "profile (verified)", "GET", "/user/profile", 200, bearer=access).json()
    if profile.get("user", {}).get("emailVerified") is not True:
        c.report.fail("[dev] profile (verified)", "emailVerified is not true")
    c.call(inst, "resend when verified", "POST", "/auth/email/verify/resend", 409, token=access)
    fresh = signin(c, inst, email, label="sign-in (verified)")
    c.check_access_token("[dev] verified access token", fresh.get("access", ""), jwks, user_id, verified=True)
    c.call(inst, "resend without token", "POST", "/auth/email/verify/resend", 401)
    c.call(inst, "resend garbage token", "POST", "/auth/email/verify/resend", 401, bearer="not.a.token")
    c.call(inst, "resend wrong method", "GET", "/auth/email/verify/resend", 405, bearer=access)
    # resend is throttled per user: 5 an hour, then 429
    throttled_email = unique_email("resend")
    signup(c, inst, throttled_email)
    bearer = signin(c, inst, throttled_email, label="sign-in (resend throttle)").get("access", "")
    for attempt in range(1, 6):
        c.call(inst, f"resend {attempt} of 5", "POST", "/auth/email/verify/resend", 202, bearer=bearer)
    limited = c.call(inst, "resend throttled", "POST", "/auth/email/verify/resend", 429, bearer=bearer)
    if limited.status_code == 429 and not limited.headers.get("retry-after", "").isdigit():
        c.report.fail("[dev] resend throttled", "429 without a numeric Retry-After")

    # recovery: forgot answers alike for a known and an unknown address
    email = unique_email("recover")
    signup(c, inst, email)
    old = signin(c, inst, email, label="sign-in (before the reset)")
    rid, mark = new_request_id("forgot"), log.mark()
    known = forgot(c, inst, "forgot (known address)", email.upper(), rid)
    recovery_token = dev_link(c, inst, log, "forgot recovery link", "recovery", rid, mark)
    rid_unknown, mark = new_request_id("forgot"), log.mark()
    unknown = forgot(c, inst, "forgot (unknown address)", unique_email("nobody"), rid_unknown)
    if known.text != unknown.text or sorted(known.headers) != sorted(unknown.headers):
        c.report.fail("[dev] forgot", "a known and an unknown address are answered differently")
    if log.wait_for(rid_unknown, "recovery", mark, timeout=1.0) is not None:
        c.report.fail("[dev] forgot (unknown address)", "a link was logged for an address without an account")
    invalid_token(c, inst, "reset unknown token", "/auth/password/reset",
                  {"token": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).rstrip(b"=").decode(),
                   "newPassword": NEW_PASSWORD})
    invalid_token(c, inst, "reset malformed token", "/auth/password/reset",
                  {"token": "not a token", "newPassword": NEW_PASSWORD})
    weak = c.call(inst, "reset weak new password", "POST", "/auth/password/reset", 400,
                  body={"token": recovery_token or "A" * 43, "newPassword": "short"})
    if weak.status_code == 400 and [(e.get("field"), e.get("code")) for e in weak.json().get("errors", [])] != [
            ("newPassword", "too_short")]:
        c.report.fail("[dev] reset weak new password", f"errors[] {weak.json().get('errors')}")
    c.call(inst, "reset missing fields", "POST", "/auth/password/reset", 400, body={})
    c.call(inst, "reset malformed JSON", "POST", "/auth/password/reset", 400, raw=b"[", content_type="application/json")
    c.call(inst, "reset wrong content type", "POST", "/auth/password/reset", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "reset over 16 KiB", "POST", "/auth/password/reset", 413, raw=big, content_type="application/json")
    c.call(inst, "reset wrong method", "GET", "/auth/password/reset", 405)
    done = c.call(inst, "reset", "POST", "/auth/password/reset", 200,
                  body={"token": recovery_token or "A" * 43, "newPassword": NEW_PASSWORD})
    if done.status_code == 200 and done.json() != {"message": "Password reset; every session was signed out"}:
        c.report.fail("[dev] reset", f"body {done.text[:200]}")
    if done.raw.headers.getlist("Set-Cookie"):
        c.report.fail("[dev] reset", "the reset set cookies; it signs nobody in")
    invalid_token(c, inst, "reset with the used token", "/auth/password/reset",
                  {"token": recovery_token or "A" * 43, "newPassword": PASSWORD})
    c.call(inst, "reset: old session's access token refused", "GET", "/user/profile", 401, bearer=old.get("access", ""))
    c.call(inst, "reset: old session's refresh token refused", "POST", "/auth/refresh", 401,
           refresh=old.get("refresh", ""))
    c.call(inst, "reset: old password refused", "POST", "/auth/signin", 401, body={"email": email, "password": PASSWORD})
    renewed = signin(c, inst, email, NEW_PASSWORD, label="sign-in with the reset password")
    profile = c.call(inst, "profile after the reset", "GET", "/user/profile", 200, bearer=renewed.get("access", ""))
    if profile.json().get("user", {}).get("emailVerified") is not True:
        c.report.fail("[dev] profile after the reset", "the reset did not mark the address verified")

    # only the newest recovery token works; racing resets of one token have one winner
    rid, mark = new_request_id("forgot"), log.mark()
    forgot(c, inst, "forgot (older token)", email, rid)
    older = dev_link(c, inst, log, "forgot older link", "recovery", rid, mark)
    rid, mark = new_request_id("forgot"), log.mark()
    forgot(c, inst, "forgot (newer token)", email, rid)
    newer = dev_link(c, inst, log, "forgot newer link", "recovery", rid, mark)
    invalid_token(c, inst, "reset with a superseded token", "/auth/password/reset",
                  {"token": older or "A" * 43, "newPassword": PASSWORD})
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(
            lambda i: c.call(inst, f"reset race {i}", "POST", "/auth/password/reset", {200, 400},
                             body={"token": newer or "A" * 43, "newPassword": f"{PASSWORD} v{i}"}).status_code,
            range(4)))
    if sorted(statuses) != [200, 400, 400, 400]:
        c.report.fail("[dev] reset race", f"statuses {sorted(statuses)}: expected one 200, the rest 400")

    # forgot is throttled per account: past 5 an hour it still answers 202 and sends nothing
    # (this account has had 3 requests above)
    for attempt in range(4, 7):
        rid, mark = new_request_id("forgot"), log.mark()
        forgot(c, inst, f"forgot {attempt} for one account", email, rid)
        logged = log.wait_for(rid, "recovery", mark, timeout=10.0 if attempt <= 5 else 1.5)
        if attempt <= 5 and logged is None:
            c.report.fail(f"[dev] forgot {attempt} for one account", "no link logged within the limit")
        if attempt > 5 and logged is not None:
            c.report.fail(f"[dev] forgot {attempt} for one account", "a link was logged past the limit")

    # forgot's bad requests
    c.call(inst, "forgot missing email", "POST", "/auth/password/forgot", 400, body={})
    c.call(inst, "forgot invalid email", "POST", "/auth/password/forgot", 400, body={"email": "not-an-email"})
    c.call(inst, "forgot malformed JSON", "POST", "/auth/password/forgot", 400, raw=b'{"email":',
           content_type="application/json")
    c.call(inst, "forgot wrong content type", "POST", "/auth/password/forgot", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "forgot over 16 KiB", "POST", "/auth/password/forgot", 413, raw=big, content_type="application/json")
    c.call(inst, "forgot wrong method", "GET", "/auth/password/forgot", 405)


def verify_by_webhook(c: Checker, inst: Instance, hook: WebhookReceiver, email: str, request_id: str) -> None:
    """Verify the address with the link the sign-up with this request id sent."""
    token = check_message(c, f"[{inst.name}] sign-up verification message", hook.wait_for(request_id),
                          kind="verification", to=email, request_id=request_id, public_url=PROD_PUBLIC_URL,
                          ttl=86400)
    c.call(inst, "verify (webhook token)", "POST", "/auth/email/verify", 200, body={"token": token or "A" * 43})


def flow_email_prod(c: Checker, inst: Instance, hook: WebhookReceiver, jwks: dict) -> None:
    """Production with require_verified_email=true and an email webhook (the receiver
    above checks each delivery's Standard Webhooks signature)."""
    email = unique_email("prodmail")
    rid = new_request_id("signup")
    user_id = signup(c, inst, email, request_id=rid)
    token = check_message(c, "[prod] sign-up verification message", hook.wait_for(rid), kind="verification",
                          to=email, request_id=rid, public_url=PROD_PUBLIC_URL, ttl=86400)
    # the right password is refused until the address is verified; a wrong one stays 401
    refused = c.call(inst, "sign-in (unverified, require_verified_email)", "POST", "/auth/signin", 403,
                     body={"email": email, "password": PASSWORD})
    if refused.status_code == 403:
        if refused.json().get("code") != "email_not_verified":
            c.report.fail("[prod] sign-in (unverified)", f"code {refused.json().get('code')!r}")
        if refused.raw.headers.getlist("Set-Cookie"):
            c.report.fail("[prod] sign-in (unverified)", "cookies were set")
    c.call(inst, "sign-in (unverified, wrong password)", "POST", "/auth/signin", 401,
           body={"email": email, "password": "wrong-password"})
    verified = c.call(inst, "verify (webhook token)", "POST", "/auth/email/verify", 200,
                      body={"token": token or "A" * 43})
    if verified.status_code == 200 and verified.json().get("emailVerified") is not True:
        c.report.fail("[prod] verify", f"body {verified.text[:200]}")
    session = signin(c, inst, email, label="sign-in (verified)")
    c.check_access_token("[prod] verified access token", session.get("body", {}).get("accessToken", ""), jwks,
                         user_id, verified=True)
    c.call(inst, "resend when verified", "POST", "/auth/email/verify/resend", 409, bearer=session.get("access", ""))

    # recovery through the webhook; an unknown address gets the same answer and no message
    rid = new_request_id("forgot")
    known = forgot(c, inst, "forgot (known address)", email, rid)
    token = check_message(c, "[prod] recovery message", hook.wait_for(rid), kind="recovery", to=email,
                          request_id=rid, public_url=PROD_PUBLIC_URL, ttl=1800)
    rid_unknown = new_request_id("forgot")
    unknown = forgot(c, inst, "forgot (unknown address)", unique_email("nobody"), rid_unknown)
    if known.text != unknown.text or sorted(known.headers) != sorted(unknown.headers):
        c.report.fail("[prod] forgot", "a known and an unknown address are answered differently")
    if hook.wait_for(rid_unknown, timeout=1.5) is not None:
        c.report.fail("[prod] forgot (unknown address)", "a message was sent for an address without an account")
    c.call(inst, "reset (webhook token)", "POST", "/auth/password/reset", 200,
           body={"token": token or "A" * 43, "newPassword": NEW_PASSWORD})
    c.call(inst, "reset: session refused", "GET", "/user/profile", 401, bearer=session.get("access", ""))
    signin(c, inst, email, NEW_PASSWORD, label="sign-in with the reset password")
    invalid_token(c, inst, "verify unknown token", "/auth/email/verify", {"token": "A" * 43})
    invalid_token(c, inst, "reset unknown token", "/auth/password/reset", {"token": "A" * 43, "newPassword": PASSWORD})
    if hook.refused:
        c.report.fail("[prod] webhook", f"{len(hook.refused)} deliveries refused by the receiver: {hook.refused[:3]}")


def flow_prod(c: Checker, inst: Instance, expected_kids: list[str], hook: WebhookReceiver | None = None) -> str:
    """Production, signing key + older verification key, tokens_in_body=true, Secure
    cookies; with an email webhook, also require_verified_email=true (accounts are
    verified before they sign in). Returns an access token of a fresh session for
    schemathesis."""
    health = c.call(inst, "health", "GET", "/health", 200).json()
    if health.get("environment") != "production":
        c.report.fail("[prod] health", f"environment {health.get('environment')!r}")
    ready = c.call(inst, "ready", "GET", "/ready", 200).json()
    if ready.get("checks", {}).get("signingKey") != "configured":
        c.report.fail("[prod] ready", "signingKey is not `configured`")
    jwks = c.call(inst, "jwks", "GET", "/.well-known/jwks.json", 200).json()
    kids = [key.get("kid") for key in jwks.get("keys", [])]
    if kids != expected_kids:
        c.report.fail("[prod] jwks", f"kids {kids}, expected {expected_kids} (current key first)")

    email = unique_email("prod")
    rid = new_request_id("signup")
    user_id = signup(c, inst, email, request_id=rid)
    if hook is not None:
        verify_by_webhook(c, inst, hook, email, rid)
    first = signin(c, inst, email)
    body = first.get("body", {})
    if body.get("tokenType") != "Bearer" or body.get("expiresIn") != 900:
        c.report.fail("[prod] sign-in", "tokenType/expiresIn missing or wrong")
    claims = c.check_access_token("[prod] sign-in access token", body.get("accessToken", ""), jwks, user_id)
    if claims and (claims.get("iss"), claims.get("aud")) != ("latch", "latch"):
        c.report.fail("[prod] sign-in access token", "iss/aud are not the configured ones")
    c.call(inst, "profile (bearer from body)", "GET", "/user/profile", 200, bearer=body.get("accessToken", ""))
    c.call(inst, "sessions", "GET", "/auth/sessions", 200, bearer=first.get("access", ""))

    # refresh through a JSON body, no cookie
    rotated = c.call(inst, "refresh via body", "POST", "/auth/refresh", 200,
                     body={"refreshToken": body.get("refreshToken", "")})
    new = rotated.json()
    cookies = c.cookies_of("[prod] refresh via body", rotated, cleared=False)
    if not new.get("refreshToken") or new.get("refreshToken") != cookies.get("refreshToken"):
        c.report.fail("[prod] refresh via body", "body refreshToken missing or differs from the cookie")
    c.call(inst, "refresh via cookie", "POST", "/auth/refresh", 200, refresh=new.get("refreshToken", ""))
    c.call(inst, "refresh via body, reused", "POST", "/auth/refresh", 401,
           body={"refreshToken": body.get("refreshToken", "")})
    c.call(inst, "refresh body without token", "POST", "/auth/refresh", 401, body={})
    c.call(inst, "refresh body malformed", "POST", "/auth/refresh", 400, raw=b"{", content_type="application/json")
    c.call(inst, "refresh body wrong type", "POST", "/auth/refresh", 400, body={"refreshToken": 7})
    c.call(inst, "refresh body not JSON", "POST", "/auth/refresh", 415, raw=b"token", content_type="text/plain")
    c.call(inst, "refresh body over 16 KiB", "POST", "/auth/refresh", 413,
           raw=b'{"refreshToken":"' + b"a" * (17 * 1024) + b'"}', content_type="application/json")

    second = signin(c, inst, email, label="sign-in (sign-out)")
    out = c.call(inst, "sign-out", "POST", "/auth/signout", 200, bearer=second.get("access", ""))
    c.cookies_of("[prod] sign-out", out, cleared=True)
    c.call(inst, "sign-out without token", "POST", "/auth/signout", 401)
    c.call(inst, "wrong method", "DELETE", "/user/profile", 405)
    if hook is not None:
        flow_email_prod(c, inst, hook, jwks)
    return signin(c, inst, email, label="sign-in (schemathesis access token)").get("access", "")


def flow_nokey(c: Checker, inst: Instance) -> None:
    """Production without a signing key: not ready, and 503 wherever a key is needed."""
    c.call(inst, "health", "GET", "/health", 200)
    not_ready = c.call(inst, "ready (no signing key)", "GET", "/ready", 503)
    if not_ready.headers.get("retry-after") != "5":
        c.report.fail("[nokey] ready", "Retry-After is not 5")
    if not_ready.json().get("checks", {}).get("signingKey") != "missing":
        c.report.fail("[nokey] ready", "signingKey is not `missing`")
    c.call(inst, "jwks (no signing key)", "GET", "/.well-known/jwks.json", 503)
    email = unique_email("nokey")
    signup(c, inst, email)
    c.call(inst, "sign-in (no signing key)", "POST", "/auth/signin", 503, body={"email": email, "password": PASSWORD})
    c.call(inst, "refresh (no signing key)", "POST", "/auth/refresh", 503, refresh="A" * 43)
    c.call(inst, "profile (no signing key)", "GET", "/user/profile", 503, bearer="a.b.c")
    c.call(inst, "sessions (no signing key)", "GET", "/auth/sessions", 503, bearer="a.b.c")
    c.call(inst, "admin users (no signing key)", "GET", "/admin/users", 503, bearer="a.b.c")
    c.call(inst, "admin audit (no signing key)", "GET", "/admin/audit", 503, bearer="a.b.c")
    someone = f"/admin/users/{random_id()}"
    c.call(inst, "admin user (no signing key)", "GET", someone, 503, bearer="a.b.c")
    c.call(inst, "admin update (no signing key)", "PATCH", someone, 503, bearer="a.b.c", body={"isActive": True})
    c.call(inst, "admin unlock (no signing key)", "POST", f"{someone}/unlock", 503, bearer="a.b.c")
    c.call(inst, "admin sessions revoke (no signing key)", "POST", f"{someone}/sessions/revoke", 503, bearer="a.b.c")
    c.call(inst, "sign-out (no signing key)", "POST", "/auth/signout", 503, bearer="a.b.c")
    # production without email_webhook_url refuses to start a recovery or verification flow
    c.call(inst, "forgot (no email webhook)", "POST", "/auth/password/forgot", 503, body={"email": email})
    c.call(inst, "resend (no signing key, no email webhook)", "POST", "/auth/email/verify/resend", 503,
           bearer="a.b.c")
    invalid_token(c, inst, "reset unknown token", "/auth/password/reset", {"token": "A" * 43, "newPassword": PASSWORD})
    invalid_token(c, inst, "verify unknown token", "/auth/email/verify", {"token": "A" * 43})
    # the second factor needs the signing key before anything else
    c.call(inst, "enroll (no signing key)", "POST", "/auth/mfa/totp/enroll", 503, bearer="a.b.c")
    c.call(inst, "confirm (no signing key)", "POST", "/auth/mfa/totp/confirm", 503, bearer="a.b.c",
           body={"code": "123456"})
    c.call(inst, "remove (no signing key)", "DELETE", "/auth/mfa/totp", 503, bearer="a.b.c", body={"code": "123456"})
    c.call(inst, "recovery codes (no signing key)", "POST", "/auth/mfa/recovery-codes", 503, bearer="a.b.c",
           body={"code": "123456"})
    c.call(inst, "verify (no signing key)", "POST", "/auth/mfa/verify", 503,
           body={"challenge": f"{random_id()}.{'A' * 43}", "code": "123456"})


# --------------------------------------------------------------------- admin API

AUDIT_ACTIONS = {"admin_user_updated", "admin_unlock", "admin_sessions_revoked"}


def random_id() -> str:
    """A well-formed id that no row has (16 random bytes, as the service makes them)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def cli_has_admin(latch: str) -> bool:
    """Whether this build of the CLI has `latch admin grant`."""
    try:
        return subprocess.run([latch, "admin", "grant", "--help"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def grant_admin(c: Checker, label: str, email: str, user_id: str, latch: str | None, data_dir: str) -> None:
    """Give the account the `admin` role as an operator does: `latch admin grant EMAIL` on
    the instance's database; with a CLI that lacks it, the role row straight into the
    embedded database (docs/operations.md)."""
    if latch and cli_has_admin(latch):
        done = subprocess.run([latch, "admin", "grant", email, "--data-dir", data_dir],
                              capture_output=True, text=True, timeout=120)
        say(f"  latch admin grant {email}: exit {done.returncode}: {(done.stdout + done.stderr).strip()[:200]}")
        if done.returncode != 0:
            c.report.fail(label, f"latch admin grant failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
        return
    say(f"  (this latch has no `admin grant`: the role row goes straight into {data_dir}/sqlite/default.db)")
    with sqlite3.connect(f"{data_dir}/sqlite/default.db", timeout=30) as db:
        db.execute("INSERT INTO user_roles (user_id, role_id, created_at) VALUES (?, 'role-admin', 0) "
                   "ON CONFLICT DO NOTHING", (user_id,))


def expect_code(c: Checker, inst: Instance, label: str, response: requests.Response, code: str) -> None:
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        got = response.json().get("code")
        if got != code:
            c.report.fail(f"[{inst.name}] {label}", f"code {got!r}, expected {code}")


def walk_users(c: Checker, inst: Instance, label: str, bearer: str, prefix: str, limit: int,
               during: Any = None) -> list[str]:
    """Every page of GET /admin/users?query=prefix; the emails in the order met. `during`
    runs after the first page (users added mid-walk)."""
    emails: list[str] = []
    cursor = None
    for page in range(1, 50):
        query = f"?query={requests.utils.quote(prefix)}&limit={limit}"
        if cursor is not None:
            query += f"&cursor={requests.utils.quote(cursor)}"
        answer = c.call(inst, f"{label} page {page}", "GET", f"/admin/users{query}", 200, bearer=bearer)
        if answer.status_code != 200:
            return emails
        body = answer.json()
        emails += [u.get("email") for u in body.get("users", [])]
        if len(body.get("users", [])) > limit:
            c.report.fail(f"[{inst.name}] {label}", f"a page of {len(body['users'])} users, limit {limit}")
        if page == 1 and during is not None:
            during()
        cursor = body.get("nextCursor")
        if cursor is None:
            return emails
    c.report.fail(f"[{inst.name}] {label}", "the walk did not end within 50 pages")
    return emails


def flow_admin(c: Checker, inst: Instance, latch: str | None, data_dir: str) -> dict[str, str]:
    """The admin API on the development instance: who may call it, each operation and
    each error a client can cause. Returns a fresh admin token and the id of a user the
    admin operations of schemathesis may act on (never the admin itself)."""
    big = b'{"roles":["' + b"a" * (17 * 1024) + b'"]}'
    tag = f"adm{uuid.uuid4().hex[:8]}"

    # an admin, made the way an operator does, and a user to act on
    admin_email = f"{tag}-admin@example.com"
    admin_id = signup(c, inst, admin_email)
    plain = signin(c, inst, admin_email, label="sign-in (not an admin yet)").get("access", "")
    refused = c.call(inst, "admin users as a non-admin", "GET", "/admin/users", 403, bearer=plain)
    expect_code(c, inst, "admin users as a non-admin", refused, "admin_required")
    grant_admin(c, "[dev] grant admin", admin_email, admin_id, latch, data_dir)
    # the role reaches the token at the next sign-in
    admin = signin(c, inst, admin_email, label="sign-in (admin)").get("access", "")
    claims = json.loads(b64url_decode(admin.split(".")[1])) if admin.count(".") == 2 else {}
    if sorted(claims.get("roles", [])) != ["admin", "user"]:
        c.report.fail("[dev] admin token", f"roles claim {claims.get('roles')}, expected admin and user")
    target_email = f"{tag}-target@example.com"
    target_id = signup(c, inst, target_email, name="Target User")
    target = signin(c, inst, target_email, label="sign-in (target)")

    # GET /admin/users: a walk of one prefix, with users added while it runs
    members = [f"{tag}-m{i}@example.com" for i in range(5)]
    for email in members:
        signup(c, inst, email)
    added = [f"{tag}-m{i}x@example.com" for i in range(3)]
    walked = walk_users(c, inst, "users walk", admin, f"{tag.upper()}-M", 2,
                        during=lambda: [signup(c, inst, email) for email in added])
    if sorted(walked) != walked or len(set(walked)) != len(walked) or not set(members) <= set(walked):
        c.report.fail("[dev] users walk", f"expected every user once, in email order: {walked}")
    listed = c.call(inst, "users (prefix, default limit)", "GET", f"/admin/users?query={tag}-t", 200,
                    bearer=admin).json()
    users = listed.get("users", [])
    if [u.get("id") for u in users] != [target_id] or listed.get("nextCursor") is not None:
        c.report.fail("[dev] users (prefix)", f"expected the target alone, no next page: {listed}")
    elif users[0].get("email") != target_email or users[0].get("roles") != ["user"]:
        c.report.fail("[dev] users (prefix)", f"email in full and roles [user] expected: {users[0]}")
    c.call(inst, "users (no parameters)", "GET", "/admin/users", 200, token=admin)
    c.call(inst, "users HEAD", "HEAD", f"/admin/users?query={tag}", 200, bearer=admin)
    for label, query in [
        ("users limit 0", "limit=0"),
        ("users limit 101", "limit=101"),
        ("users limit not a number", "limit=ten"),
        ("users cursor not base64url", "cursor=%21%21%21"),
        ("users cursor too long", "cursor=" + "A" * 600),
        ("users query too long", "query=" + "a" * 255),
        ("users unknown parameter", "page=2"),
        ("users parameter twice", "limit=1&limit=2"),
    ]:
        answer = c.call(inst, label, "GET", f"/admin/users?{query}", 400, bearer=admin)
        expect_code(c, inst, label, answer, "invalid_query")
    c.call(inst, "users bad query before the token", "GET", "/admin/users?limit=0", 400)
    c.call(inst, "users without token", "GET", "/admin/users", 401)
    c.call(inst, "users garbage token", "GET", "/admin/users", 401, bearer="not.a.token")
    c.call(inst, "users wrong method", "POST", "/admin/users", 405, bearer=admin)

    # GET /admin/users/{id}: the account, its sessions, its lock-out state
    detail = c.call(inst, "user", "GET", f"/admin/users/{target_id}", 200, bearer=admin).json().get("user", {})
    if (detail.get("email"), detail.get("lockedOut"), detail.get("lockedUntil")) != (target_email, False, None) \
            or len(detail.get("sessions", [])) != 1:
        c.report.fail("[dev] user", f"expected the target, not locked, one session: {detail}")
    c.call(inst, "user HEAD", "HEAD", f"/admin/users/{target_id}", 200, bearer=admin)
    c.call(inst, "user unknown id", "GET", f"/admin/users/{random_id()}", 404, bearer=admin)
    c.call(inst, "user malformed id", "GET", "/admin/users/not-an-id", 404, bearer=admin)
    c.call(inst, "user malformed id, no token", "GET", "/admin/users/not-an-id", 404)
    c.call(inst, "user without token", "GET", f"/admin/users/{target_id}", 401)
    answer = c.call(inst, "user as a non-admin", "GET", f"/admin/users/{target_id}", 403,
                    bearer=target.get("access", ""))
    expect_code(c, inst, "user as a non-admin", answer, "admin_required")
    c.call(inst, "user wrong method", "DELETE", f"/admin/users/{target_id}", 405, bearer=admin)

    # POST /admin/users/{id}/unlock: the target locks itself out of the password check
    bearer = target.get("access", "")
    for attempt in range(1, 6):
        c.call(inst, f"target password guess {attempt}", "POST", "/auth/password", 403, bearer=bearer,
               body={"currentPassword": f"guess-{attempt}", "newPassword": NEW_PASSWORD})
    c.call(inst, "target password check locked", "POST", "/auth/password", 429, bearer=bearer,
           body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    locked = c.call(inst, "user (locked out)", "GET", f"/admin/users/{target_id}", 200, bearer=admin).json()
    if locked.get("user", {}).get("lockedOut") is not True or not locked.get("user", {}).get("lockedUntil"):
        c.report.fail("[dev] user (locked out)", f"lockedOut/lockedUntil: {locked.get('user')}")
    unlocked = c.call(inst, "unlock", "POST", f"/admin/users/{target_id}/unlock", 200, bearer=admin)
    if unlocked.status_code == 200 and set(unlocked.json()) != {"message"}:
        c.report.fail("[dev] unlock", f"body {unlocked.text[:200]}")
    c.call(inst, "target password check after unlock", "POST", "/auth/password", 403, bearer=bearer,
           body={"currentPassword": "still-wrong", "newPassword": NEW_PASSWORD})
    again = c.call(inst, "user (unlocked)", "GET", f"/admin/users/{target_id}", 200, bearer=admin).json()
    if again.get("user", {}).get("lockedOut") is not False:
        c.report.fail("[dev] user (unlocked)", f"lockedOut: {again.get('user')}")
    c.call(inst, "unlock unknown id", "POST", f"/admin/users/{random_id()}/unlock", 404, bearer=admin)
    c.call(inst, "unlock malformed id", "POST", "/admin/users/x/unlock", 404, bearer=admin)
    c.call(inst, "unlock without token", "POST", f"/admin/users/{target_id}/unlock", 401)
    answer = c.call(inst, "unlock as a non-admin", "POST", f"/admin/users/{target_id}/unlock", 403, bearer=bearer)
    expect_code(c, inst, "unlock as a non-admin", answer, "admin_required")
    c.call(inst, "unlock wrong method", "GET", f"/admin/users/{target_id}/unlock", 405, bearer=admin)

    # PATCH /admin/users/{id}
    path = f"/admin/users/{target_id}"
    for label, payload in [
        ("update nothing", {}),
        ("update wrong type", {"isActive": "no"}),
        ("update roles not a list", {"roles": "admin"}),
        ("update unknown field", {"isActive": True, "email": "x@example.com"}),
    ]:
        answer = c.call(inst, label, "PATCH", path, 400, bearer=admin, body=payload)
        if answer.status_code == 400 and "code" in answer.json():
            c.report.fail(f"[dev] {label}", f"a malformed body has no code: {answer.text[:200]}")
    unknown_role = c.call(inst, "update unknown role", "PATCH", path, 400, bearer=admin, body={"roles": ["root"]})
    if [(e.get("field"), e.get("code")) for e in unknown_role.json().get("errors", [])] != [("roles", "unknown_role")]:
        c.report.fail("[dev] update unknown role", f"errors[] {unknown_role.json().get('errors')}")
    for label, roles in [("update roles without user", ["admin"]), ("update no roles", [])]:
        answer = c.call(inst, label, "PATCH", path, 400, bearer=admin, body={"roles": roles})
        if [(e.get("field"), e.get("code")) for e in answer.json().get("errors", [])] != [("roles", "user_required")]:
            c.report.fail(f"[dev] {label}", f"errors[] {answer.json().get('errors')}")
    c.call(inst, "update malformed JSON", "PATCH", path, 400, bearer=admin, raw=b"{", content_type="application/json")
    c.call(inst, "update wrong content type", "PATCH", path, 415, bearer=admin, raw=b"{}", content_type="text/plain")
    c.call(inst, "update over 16 KiB", "PATCH", path, 413, bearer=admin, raw=big, content_type="application/json")
    c.call(inst, "update bad body before the token", "PATCH", path, 400, body={})
    c.call(inst, "update without token", "PATCH", path, 401, body={"isActive": True})
    answer = c.call(inst, "update as a non-admin", "PATCH", path, 403, bearer=bearer, body={"isActive": True})
    expect_code(c, inst, "update as a non-admin", answer, "admin_required")
    c.call(inst, "update unknown id", "PATCH", f"/admin/users/{random_id()}", 404, bearer=admin,
           body={"isActive": True})
    for label, payload in [("update: disable self", {"isActive": False}),
                           ("update: drop own admin role", {"roles": ["user"]}),
                           ("update: disable self, roles kept", {"isActive": False, "roles": ["user", "admin"]})]:
        answer = c.call(inst, label, "PATCH", f"/admin/users/{admin_id}", 403, bearer=admin, body=payload)
        expect_code(c, inst, label, answer, "self_demotion")
    kept = c.call(inst, "update: own roles kept", "PATCH", f"/admin/users/{admin_id}", 200, bearer=admin,
                  body={"isActive": True, "roles": ["admin", "user", "admin"]}).json()
    if kept.get("user", {}).get("roles") != ["admin", "user"]:
        c.report.fail("[dev] update: own roles kept", f"roles {kept.get('user', {}).get('roles')}")
    second = signin(c, inst, target_email, label="sign-in (target, second session)")
    disabled = c.call(inst, "update: disable", "PATCH", path, 200, bearer=admin, body={"isActive": False}).json()
    if disabled.get("user", {}).get("isActive") is not False:
        c.report.fail("[dev] update: disable", f"user {disabled.get('user')}")
    c.call(inst, "disabled: refresh refused at once", "POST", "/auth/refresh", 401, refresh=second.get("refresh", ""))
    c.call(inst, "disabled: access token refused", "GET", "/user/profile", 401, bearer=bearer)
    c.call(inst, "disabled: sign-in refused", "POST", "/auth/signin", 401,
           body={"email": target_email, "password": PASSWORD})
    gone = c.call(inst, "user (disabled)", "GET", path, 200, bearer=admin).json().get("user", {})
    if gone.get("isActive") is not False or gone.get("sessions"):
        c.report.fail("[dev] user (disabled)", f"expected inactive without sessions: {gone}")
    c.call(inst, "update: enable and make admin", "PATCH", path, 200, bearer=admin,
           body={"isActive": True, "roles": ["user", "admin"]})

    # a second admin: demoted, their token is refused at once; signed out, 401
    other = signin(c, inst, target_email, label="sign-in (target, now admin)").get("access", "")
    c.call(inst, "users as the second admin", "GET", "/admin/users?limit=1", 200, bearer=other)
    demoted = c.call(inst, "update: demote the second admin", "PATCH", path, 200, bearer=admin,
                     body={"roles": ["user"]}).json()
    if demoted.get("user", {}).get("roles") != ["user"]:
        c.report.fail("[dev] update: demote", f"roles {demoted.get('user', {}).get('roles')}")
    answer = c.call(inst, "users with a demoted admin's token", "GET", "/admin/users", 403, bearer=other)
    expect_code(c, inst, "users with a demoted admin's token", answer, "admin_required")
    c.call(inst, "update wrong method", "PUT", path, 405, bearer=admin, body={"isActive": True})

    # POST /admin/users/{id}/sessions/revoke
    last = signin(c, inst, target_email, label="sign-in (target, one more session)")
    c.call(inst, "sessions revoke", "POST", f"{path}/sessions/revoke", 200, bearer=admin)
    c.call(inst, "revoked: access token refused", "GET", "/user/profile", 401, bearer=other)
    c.call(inst, "revoked: refresh refused", "POST", "/auth/refresh", 401, refresh=last.get("refresh", ""))
    gone = c.call(inst, "user (signed out everywhere)", "GET", path, 200, bearer=admin).json().get("user", {})
    if gone.get("sessions") != [] or gone.get("isActive") is not True:
        c.report.fail("[dev] user (signed out everywhere)", f"expected active, without sessions: {gone}")
    c.call(inst, "sessions revoke (none left)", "POST", f"{path}/sessions/revoke", 200, bearer=admin)
    c.call(inst, "sessions revoke unknown id", "POST", f"/admin/users/{random_id()}/sessions/revoke", 404,
           bearer=admin)
    c.call(inst, "sessions revoke without token", "POST", f"{path}/sessions/revoke", 401)
    c.call(inst, "sessions revoke wrong method", "GET", f"{path}/sessions/revoke", 405, bearer=admin)
    # an admin whose session has ended gets 401, not 403
    spare = signin(c, inst, admin_email, label="sign-in (admin, a session to end)")
    c.call(inst, "sign-out (admin's spare session)", "POST", "/auth/signout", 200, bearer=spare.get("access", ""))
    c.call(inst, "users with an ended session", "GET", "/admin/users", 401, bearer=spare.get("access", ""))
    answer = c.call(inst, "sessions revoke as a non-admin", "POST", f"{path}/sessions/revoke", 403,
                    bearer=signin(c, inst, target_email, label="sign-in (target, non-admin)").get("access", ""))
    expect_code(c, inst, "sessions revoke as a non-admin", answer, "admin_required")

    # GET /admin/audit: the admin actions, with the acting admin
    trail = c.call(inst, "audit of the target", "GET", f"/admin/audit?userId={target_id}&limit=100", 200,
                   bearer=admin).json().get("events", [])
    actions = [e for e in trail if e.get("event") in AUDIT_ACTIONS]
    if {e.get("event") for e in actions} != AUDIT_ACTIONS or any(e.get("actorId") != admin_id for e in actions):
        c.report.fail("[dev] audit of the target", f"expected the three admin actions by {admin_id}: {actions}")
    if any(e.get("userId") != target_id for e in trail) or [e.get("at") for e in trail] != sorted(
            (e.get("at") for e in trail), reverse=True):
        c.report.fail("[dev] audit of the target", "events of another user, or not newest first")
    seen: list[str] = []
    cursor = None
    for page in range(1, 40):
        query = f"/admin/audit?userId={target_id}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = c.call(inst, f"audit page {page}", "GET", query, 200, bearer=admin).json()
        seen += [e.get("id") for e in body.get("events", [])]
        cursor = body.get("nextCursor")
        if not cursor:
            break
    if seen != [e.get("id") for e in trail]:
        c.report.fail("[dev] audit pages", "the pages do not add up to the whole trail, once each, in order")
    kind = c.call(inst, "audit by kind", "GET", f"/admin/audit?kind=admin_unlock&userId={target_id}", 200,
                  token=admin).json().get("events", [])
    if len(kind) != 1 or kind[0].get("event") != "admin_unlock":
        c.report.fail("[dev] audit by kind", f"expected one admin_unlock: {kind}")
    c.call(inst, "audit (no parameters)", "GET", "/admin/audit", 200, bearer=admin)
    c.call(inst, "audit HEAD", "HEAD", "/admin/audit?limit=1", 200, bearer=admin)
    for label, query in [
        ("audit unknown kind", "kind=not_an_event"),
        ("audit malformed userId", "userId=nope"),
        ("audit cursor not a position", "cursor=" + base64.urlsafe_b64encode(b"x").rstrip(b"=").decode()),
        ("audit limit 0", "limit=0"),
        ("audit unknown parameter", "user=1"),
    ]:
        answer = c.call(inst, label, "GET", f"/admin/audit?{query}", 400, bearer=admin)
        expect_code(c, inst, label, answer, "invalid_query")
    c.call(inst, "audit without token", "GET", "/admin/audit", 401)
    answer = c.call(inst, "audit as a non-admin", "GET", "/admin/audit", 403, bearer=plain)
    expect_code(c, inst, "audit as a non-admin", answer, "admin_required")
    c.call(inst, "audit wrong method", "DELETE", "/admin/audit", 405, bearer=admin)

    # for schemathesis: a fresh admin session, and a user (with a session) to act on
    victim_email = f"{tag}-fuzz@example.com"
    victim_id = signup(c, inst, victim_email)
    signin(c, inst, victim_email, label="sign-in (schemathesis admin target)")
    fresh = signin(c, inst, admin_email, label="sign-in (schemathesis admin token)").get("access", "")
    return {"dev_admin": fresh, "dev_admin_target": victim_id}


# --------------------------------------------------------------------- second factor

TOTP_STEP = 30
RECOVERY_CODE_RE = re.compile(r"^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")
MFA_CODED = {"invalid_mfa_code", "invalid_challenge", "aal2_required", "mfa_not_enabled", "mfa_not_pending",
             "mfa_already_enabled"}


class Authenticator:
    """An authenticator app, written from RFC 6238 with the standard library (not the
    service's code): HMAC-SHA1, 6 digits, 30-second steps. The service accepts one step
    either side of its clock and never a step twice, so each code is of a step after the
    last one used: the step before now while the current one has 5 s to go (the service
    reads its clock a moment later), else now, else the next; when all three are spent it
    waits for the clock."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b32decode(secret + "=" * (-len(secret) % 8))
        self.last = -1

    def code_at(self, step: int) -> str:
        digest = hmac.new(self.key, step.to_bytes(8, "big"), hashlib.sha1).digest()
        offset = digest[19] & 15
        return f"{(int.from_bytes(digest[offset:offset + 4], 'big') & 0x7FFFFFFF) % 1_000_000:06d}"

    def code(self) -> str:
        while True:
            now, into = divmod(int(time.time()), TOTP_STEP)
            step = max(self.last + 1, now - 1 if into < 25 else now)
            if step <= now + 1:
                break
            time.sleep(1)
        self.last = step
        return self.code_at(step)

    def used(self) -> str:
        """The code of the last step used (presenting it again is a replay)."""
        return self.code_at(self.last)

    def wrong(self) -> str:
        """Six digits that no step near now gives."""
        now = int(time.time()) // TOTP_STEP
        near = {self.code_at(step) for step in range(now - 3, now + 4)}
        return next(code for code in (f"{n:06d}" for n in range(100_000, 1_000_000)) if code not in near)


def enrol(c: Checker, inst: Instance, label: str, bearer: str, email: str, issuer: str = "Latch") -> Authenticator:
    """POST /auth/mfa/totp/enroll: the answer against the contract; the app it sets up."""
    answer = c.call(inst, label, "POST", "/auth/mfa/totp/enroll", 200, bearer=bearer)
    body = answer.json() if answer.status_code == 200 else {}
    secret = body.get("secret", "")
    quoted = requests.utils.quote(email.strip().lower(), safe="")
    expected = (f"otpauth://totp/{issuer}:{quoted}?secret={secret}&issuer={issuer}"
                "&algorithm=SHA1&digits=6&period=30")
    if answer.status_code == 200 and body.get("otpauthUri") != expected:
        c.report.fail(f"[{inst.name}] {label}", f"otpauthUri {body.get('otpauthUri')!r}, expected {expected!r}")
    if answer.status_code == 200 and "<svg" not in body.get("qrSvg", ""):
        c.report.fail(f"[{inst.name}] {label}", "qrSvg is not an SVG document")
    return Authenticator(secret or "A" * 32)


def recovery_codes(c: Checker, inst: Instance, label: str, response: requests.Response) -> list[str]:
    """The ten recovery codes of a 200 (confirm or regenerate), checked."""
    if response.status_code != 200:
        return []
    codes = response.json().get("recoveryCodes", [])
    if len(codes) != 10 or len(set(codes)) != 10 or not all(RECOVERY_CODE_RE.match(code) for code in codes):
        c.report.fail(f"[{inst.name}] {label}", f"expected ten distinct XXXX-XXXX-XXXX codes: {codes}")
    return codes


def challenge_of(c: Checker, inst: Instance, label: str, email: str, password: str = PASSWORD) -> str:
    """Sign-in of a user with an active factor: 200 with a challenge and no cookies."""
    answer = c.call(inst, label, "POST", "/auth/signin", 200, body={"email": email, "password": password})
    if answer.status_code != 200:
        return ""
    body = answer.json()
    if body.get("mfaRequired") is not True or not body.get("challenge"):
        c.report.fail(f"[{inst.name}] {label}", f"expected mfaRequired and a challenge: {answer.text[:200]}")
    if answer.raw.headers.getlist("Set-Cookie"):
        c.report.fail(f"[{inst.name}] {label}", "cookies were set although no session exists yet")
    if {"accessToken", "refreshToken"} & set(body):
        c.report.fail(f"[{inst.name}] {label}", "tokens in the body although no session exists yet")
    return body.get("challenge", "")


def verify_mfa(c: Checker, inst: Instance, label: str, challenge: str, jwks: dict, user_id: str,
               amr: tuple[str, ...], **proof: str) -> dict:
    """POST /auth/mfa/verify that must open an aal2 session: answered like sign-in."""
    answer = c.call(inst, label, "POST", "/auth/mfa/verify", 200, body={"challenge": challenge, **proof})
    if answer.status_code != 200:
        return {}
    cookies = c.cookies_of(f"[{inst.name}] {label}", answer, cleared=False)
    body = answer.json()
    if inst.tokens_in_body:
        if body.get("accessToken") != cookies.get("token") or body.get("refreshToken") != cookies.get("refreshToken"):
            c.report.fail(f"[{inst.name}] {label}", "body tokens differ from the cookies")
    elif "accessToken" in body:
        c.report.fail(f"[{inst.name}] {label}", "tokens in the body although tokens_in_body=false")
    c.check_access_token(f"[{inst.name}] {label} access token", cookies.get("token", ""), jwks, user_id, amr=amr,
                         verified=None)
    return {"access": cookies.get("token", ""), "refresh": cookies.get("refreshToken", ""), "body": body}


def refused_code(c: Checker, inst: Instance, label: str, method: str, path: str, status: int, code: str,
                 **kwargs: Any) -> requests.Response:
    """A call that must be refused with this status and problem `code`."""
    answer = c.call(inst, label, method, path, status, **kwargs)
    expect_code(c, inst, label, answer, code)
    return answer


def admin_mfa(c: Checker, inst: Instance, label: str, admin: str | None, user_id: str, enabled: bool) -> None:
    """GET /admin/users/{id}: the user's `mfa` state."""
    if not admin:
        return
    detail = c.call(inst, label, "GET", f"/admin/users/{user_id}", 200, bearer=admin).json().get("user", {})
    mfa = detail.get("mfa", {})
    if mfa.get("enabled") is not enabled or (mfa.get("confirmedAt") is None) == enabled:
        c.report.fail(f"[{inst.name}] {label}", f"mfa {mfa}, expected enabled={enabled} with confirmedAt only then")


def flow_mfa_dev(c: Checker, inst: Instance, admin: str | None, log: DevLog | None = None) -> None:
    """The second factor on the development instance (its TOTP secrets sealed with the
    key development derives from its signing key). Every code presented counts on the
    user's counter before it is checked and a correct one clears it, so each user here
    stays under 5 refusals between successes, except the one locked out on purpose."""
    jwks = c.call(inst, "jwks (second factor)", "GET", "/.well-known/jwks.json", 200).json()
    big = b'{"code":"' + b"1" * (17 * 1024) + b'"}'

    # nothing to confirm, replace or remove without a factor
    bare_email = unique_email("nofactor")
    signup(c, inst, bare_email)
    bare = signin(c, inst, bare_email, label="sign-in (no factor)").get("access", "")
    refused_code(c, inst, "confirm before enrolling", "POST", "/auth/mfa/totp/confirm", 409, "mfa_not_pending",
                 bearer=bare, body={"code": "123456"})
    refused_code(c, inst, "recovery codes without a factor", "POST", "/auth/mfa/recovery-codes", 404,
                 "mfa_not_enabled", bearer=bare, body={"code": "123456"})
    refused_code(c, inst, "remove without a factor", "DELETE", "/auth/mfa/totp", 404, "mfa_not_enabled",
                 bearer=bare, body={"code": "123456"})

    # enrolment: pending until confirmed; a second enrolment replaces the first
    email = unique_email("mfa")
    user_id = signup(c, inst, email)
    first = signin(c, inst, email, label="sign-in (before the second factor)")
    bearer = first.get("access", "")
    c.check_access_token("[dev] password-only access token", bearer, jwks, user_id)
    other = signin(c, inst, email, label="sign-in (another session)")
    if c.call(inst, "profile (no factor)", "GET", "/user/profile", 200, bearer=bearer).json().get(
            "user", {}).get("mfaEnabled") is not False:
        c.report.fail("[dev] profile (no factor)", "mfaEnabled is not false")
    c.call(inst, "enroll without token", "POST", "/auth/mfa/totp/enroll", 401)
    c.call(inst, "enroll wrong method", "GET", "/auth/mfa/totp/enroll", 405, bearer=bearer)
    stale = enrol(c, inst, "enroll", bearer, email)
    app = enrol(c, inst, "enroll again (replaces the pending one)", bearer, email)
    if stale.key == app.key:
        c.report.fail("[dev] enroll again", "the second enrolment gave the same secret")
    if c.call(inst, "profile (pending factor)", "GET", "/user/profile", 200, token=bearer).json().get(
            "user", {}).get("mfaEnabled") is not False:
        c.report.fail("[dev] profile (pending factor)", "a pending factor shows as enabled")
    admin_mfa(c, inst, "admin user (pending factor)", admin, user_id, enabled=False)
    signin(c, inst, email, label="sign-in (pending factor: no challenge)")

    # confirm: the body before the token, then the codes
    missing = c.call(inst, "confirm missing code", "POST", "/auth/mfa/totp/confirm", 400, bearer=bearer, body={})
    if [(e.get("field"), e.get("code")) for e in missing.json().get("errors", [])] != [("code", "required")]:
        c.report.fail("[dev] confirm missing code", f"errors[] {missing.json().get('errors')}")
    c.call(inst, "confirm recovery code instead", "POST", "/auth/mfa/totp/confirm", 400, bearer=bearer,
           body={"recoveryCode": "AAAA-BBBB-CCCC"})
    c.call(inst, "confirm code of the wrong type", "POST", "/auth/mfa/totp/confirm", 400, bearer=bearer,
           body={"code": 123456})
    c.call(inst, "confirm malformed JSON", "POST", "/auth/mfa/totp/confirm", 400, bearer=bearer, raw=b"{",
           content_type="application/json")
    c.call(inst, "confirm wrong content type", "POST", "/auth/mfa/totp/confirm", 415, bearer=bearer, raw=b"{}",
           content_type="text/plain")
    c.call(inst, "confirm over 16 KiB", "POST", "/auth/mfa/totp/confirm", 413, bearer=bearer, raw=big,
           content_type="application/json")
    c.call(inst, "confirm bad body before the token", "POST", "/auth/mfa/totp/confirm", 400, body={})
    c.call(inst, "confirm without token", "POST", "/auth/mfa/totp/confirm", 401, body={"code": "123456"})
    c.call(inst, "confirm wrong method", "GET", "/auth/mfa/totp/confirm", 405, bearer=bearer)
    refused_code(c, inst, "confirm with the replaced secret's code", "POST", "/auth/mfa/totp/confirm", 400,
                 "invalid_mfa_code", bearer=bearer, body={"code": stale.code_at(int(time.time()) // TOTP_STEP)})
    refused_code(c, inst, "confirm malformed code", "POST", "/auth/mfa/totp/confirm", 400, "invalid_mfa_code",
                 bearer=bearer, body={"code": "12ab56"})
    confirmed = c.call(inst, "confirm", "POST", "/auth/mfa/totp/confirm", 200, token=bearer,
                       body={"code": app.code()})
    first_codes = recovery_codes(c, inst, "confirm", confirmed)
    c.call(inst, "confirm: other session revoked", "GET", "/user/profile", 401, bearer=other.get("access", ""))
    if c.call(inst, "confirm: own session kept", "GET", "/user/profile", 200, bearer=bearer).json().get(
            "user", {}).get("mfaEnabled") is not True:
        c.report.fail("[dev] confirm: own session kept", "mfaEnabled is not true")
    again = c.call(inst, "confirm again", "POST", "/auth/mfa/totp/confirm", 409, bearer=bearer,
                   body={"code": app.wrong()})
    if again.status_code == 409 and again.json().get("code") not in ("mfa_already_enabled", "mfa_not_pending"):
        c.report.fail("[dev] confirm again", f"code {again.json().get('code')!r}")
    refused_code(c, inst, "enroll with an active factor", "POST", "/auth/mfa/totp/enroll", 409,
                 "mfa_already_enabled", bearer=bearer)
    admin_mfa(c, inst, "admin user (active factor)", admin, user_id, enabled=True)

    # step-up: the password-only session may neither remove the factor nor change the
    # password; new recovery codes need only a code (not in the default step_up_routes)
    refused_code(c, inst, "remove from an aal1 session", "DELETE", "/auth/mfa/totp", 403, "aal2_required",
                 bearer=bearer, body={"recoveryCode": first_codes[0] if first_codes else "AAAA-AAAA-AAAA"})
    refused_code(c, inst, "password change from an aal1 session", "POST", "/auth/password", 403, "aal2_required",
                 bearer=bearer, body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    c.call(inst, "recovery codes missing code", "POST", "/auth/mfa/recovery-codes", 400, bearer=bearer, body={})
    c.call(inst, "recovery codes with a recovery code", "POST", "/auth/mfa/recovery-codes", 400, bearer=bearer,
           body={"recoveryCode": first_codes[0] if first_codes else "AAAA-AAAA-AAAA"})
    c.call(inst, "recovery codes wrong content type", "POST", "/auth/mfa/recovery-codes", 415, bearer=bearer,
           raw=b"{}", content_type="text/plain")
    c.call(inst, "recovery codes over 16 KiB", "POST", "/auth/mfa/recovery-codes", 413, bearer=bearer, raw=big,
           content_type="application/json")
    c.call(inst, "recovery codes without token", "POST", "/auth/mfa/recovery-codes", 401, body={"code": "123456"})
    c.call(inst, "recovery codes wrong method", "GET", "/auth/mfa/recovery-codes", 405, bearer=bearer)
    regenerated = c.call(inst, "recovery codes (aal1 session, TOTP code)", "POST", "/auth/mfa/recovery-codes", 200,
                         bearer=bearer, body={"code": app.code()})
    codes = recovery_codes(c, inst, "recovery codes", regenerated)
    if set(codes) & set(first_codes):
        c.report.fail("[dev] recovery codes", "new codes repeat old ones")
    while len(codes) < 3:
        codes.append("AAAA-AAAA-AAAA")

    # sign-in: the password answers a challenge; the code opens the session
    c.call(inst, "sign-in wrong password (factor active)", "POST", "/auth/signin", 401,
           body={"email": email, "password": "wrong-password"})
    challenge = challenge_of(c, inst, "sign-in (challenge)", email)
    someone = f"{random_id()}.{'A' * 43}"
    for label, payload in [
        ("verify missing challenge", {"code": "123456"}),
        ("verify neither code nor recovery code", {"challenge": challenge}),
        ("verify both code and recovery code", {"challenge": challenge, "code": "123456", "recoveryCode": codes[0]}),
        ("verify empty code", {"challenge": challenge, "code": ""}),
    ]:
        answer = c.call(inst, label, "POST", "/auth/mfa/verify", 400, body=payload)
        if answer.status_code == 400 and answer.json().get("code") != "FST_ERR_VALIDATION":
            c.report.fail(f"[dev] {label}", f"code {answer.json().get('code')!r}, expected FST_ERR_VALIDATION")
    c.call(inst, "verify code of the wrong type", "POST", "/auth/mfa/verify", 400,
           body={"challenge": challenge, "code": 123456})
    c.call(inst, "verify malformed JSON", "POST", "/auth/mfa/verify", 400, raw=b"[", content_type="application/json")
    c.call(inst, "verify wrong content type", "POST", "/auth/mfa/verify", 415, raw=b"{}", content_type="text/plain")
    c.call(inst, "verify over 16 KiB", "POST", "/auth/mfa/verify", 413, raw=big, content_type="application/json")
    c.call(inst, "verify wrong method", "GET", "/auth/mfa/verify", 405)
    for label, made_up in [("verify malformed challenge", "not a challenge"), ("verify unknown challenge", someone),
                           ("verify another user's challenge", f"{random_id()}.{challenge.partition('.')[2]}")]:
        refused_code(c, inst, label, "POST", "/auth/mfa/verify", 400, "invalid_challenge",
                     body={"challenge": made_up, "code": "123456"})
    refused_code(c, inst, "verify wrong code", "POST", "/auth/mfa/verify", 400, "invalid_mfa_code",
                 body={"challenge": challenge, "code": app.wrong()})
    with_code = verify_mfa(c, inst, "verify (TOTP code; the challenge outlived a wrong code)", challenge, jwks,
                           user_id, ("pwd", "otp"), code=app.code())
    refused_code(c, inst, "verify a used challenge", "POST", "/auth/mfa/verify", 400, "invalid_challenge",
                 body={"challenge": challenge, "code": app.wrong()})
    if with_code.get("body", {}).get("user", {}).get("id") != user_id:
        c.report.fail("[dev] verify", f"user {with_code.get('body', {}).get('user')}")
    c.call(inst, "profile (aal2 session)", "GET", "/user/profile", 200, token=with_code.get("access", ""))
    challenge = challenge_of(c, inst, "sign-in (challenge for a replay)", email)
    refused_code(c, inst, "verify replayed code", "POST", "/auth/mfa/verify", 400, "invalid_mfa_code",
                 body={"challenge": challenge, "code": app.used()})
    refused_code(c, inst, "verify replaced recovery code", "POST", "/auth/mfa/verify", 400, "invalid_mfa_code",
                 body={"challenge": challenge, "recoveryCode": first_codes[1] if first_codes else "AAAA-AAAA-AAAA"})
    by_recovery = verify_mfa(c, inst, "verify (recovery code)", challenge, jwks, user_id, ("pwd", "recovery"),
                             recoveryCode=codes[0])
    pending = challenge_of(c, inst, "sign-in (challenge left open)", email)
    refused_code(c, inst, "verify used recovery code", "POST", "/auth/mfa/verify", 400, "invalid_mfa_code",
                 body={"challenge": pending, "recoveryCode": codes[0]})

    # refresh keeps the session's assurance
    rotated = c.call(inst, "refresh (aal2 session)", "POST", "/auth/refresh", 200, refresh=with_code.get("refresh", ""))
    fresh = c.cookies_of("[dev] refresh (aal2 session)", rotated, cleared=False)
    c.check_access_token("[dev] refreshed aal2 access token", fresh.get("token", ""), jwks, user_id, amr=("pwd", "otp"))
    stepped = fresh.get("token", "")

    # removal from the aal2 session; then sign-in is password-only again
    c.call(inst, "remove missing code", "DELETE", "/auth/mfa/totp", 400, bearer=stepped, body={})
    c.call(inst, "remove both codes", "DELETE", "/auth/mfa/totp", 400, bearer=stepped,
           body={"code": "123456", "recoveryCode": codes[1]})
    c.call(inst, "remove wrong content type", "DELETE", "/auth/mfa/totp", 415, bearer=stepped, raw=b"{}",
           content_type="text/plain")
    c.call(inst, "remove over 16 KiB", "DELETE", "/auth/mfa/totp", 413, bearer=stepped, raw=big,
           content_type="application/json")
    c.call(inst, "remove without token", "DELETE", "/auth/mfa/totp", 401, body={"code": "123456"})
    c.call(inst, "remove wrong method", "POST", "/auth/mfa/totp", 405, bearer=stepped)
    refused_code(c, inst, "remove wrong code", "DELETE", "/auth/mfa/totp", 400, "invalid_mfa_code", bearer=stepped,
                 body={"code": app.wrong()})
    removed = c.call(inst, "remove (recovery code, aal2 session)", "DELETE", "/auth/mfa/totp", 200, token=stepped,
                     body={"recoveryCode": codes[1]})
    if removed.status_code == 200 and set(removed.json()) != {"message"}:
        c.report.fail("[dev] remove", f"body {removed.text[:200]}")
    # a sign-in that waited for the removed factor cannot open a session with it
    left = c.call(inst, "verify a challenge opened before the removal", "POST", "/auth/mfa/verify", 400,
                  body={"challenge": pending, "recoveryCode": codes[2]})
    if left.status_code == 400 and left.json().get("code") not in ("invalid_challenge", "invalid_mfa_code"):
        c.report.fail("[dev] verify a challenge opened before the removal", f"code {left.json().get('code')!r}")
    refused_code(c, inst, "remove again", "DELETE", "/auth/mfa/totp", 404, "mfa_not_enabled", bearer=stepped,
                 body={"recoveryCode": codes[2]})
    if c.call(inst, "profile (factor removed)", "GET", "/user/profile", 200, bearer=stepped).json().get(
            "user", {}).get("mfaEnabled") is not False:
        c.report.fail("[dev] profile (factor removed)", "mfaEnabled is not false")
    plain = signin(c, inst, email, label="sign-in (factor removed: no challenge)")
    c.check_access_token("[dev] access token after the removal", plain.get("access", ""), jwks, user_id)
    c.call(inst, "password change (no factor any more, aal1)", "POST", "/auth/password", 200,
           bearer=plain.get("access", ""), body={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD})
    c.call(inst, "recovery-code session ended by the password change", "GET", "/user/profile", 401,
           bearer=by_recovery.get("access", ""))
    admin_mfa(c, inst, "admin user (factor removed)", admin, user_id, enabled=False)
    if admin:
        trail = c.call(inst, "audit of the second factor", "GET", f"/admin/audit?userId={user_id}&limit=100", 200,
                       bearer=admin).json().get("events", [])
        seen = {(e.get("event"), e.get("reason")) for e in trail}
        wanted = {("mfa_enrolled", None), ("mfa_verified", None), ("mfa_verified", "recovery_code"),
                  ("recovery_code_used", None), ("recovery_codes_regenerated", None), ("mfa_removed", None),
                  ("signin", "mfa_required")}
        if not wanted <= seen or "mfa_failed" not in {event for event, _ in seen}:
            c.report.fail("[dev] audit of the second factor", f"missing {sorted(map(str, wanted - seen))}: {seen}")
        c.call(inst, "audit by kind mfa_failed", "GET", f"/admin/audit?kind=mfa_failed&userId={user_id}", 200,
               bearer=admin)

    # the lock-out: 5 wrong codes at sign-in lock the user's codes everywhere
    locked_email = unique_email("mfalock")
    signup(c, inst, locked_email)
    session = signin(c, inst, locked_email, label="sign-in (to be locked out)").get("access", "")
    locked_app = enrol(c, inst, "enroll (to be locked out)", session, locked_email)
    c.call(inst, "confirm (to be locked out)", "POST", "/auth/mfa/totp/confirm", 200, bearer=session,
           body={"code": locked_app.code()})
    challenge = challenge_of(c, inst, "sign-in (challenge to lock out)", locked_email)
    for attempt in range(1, 6):
        refused_code(c, inst, f"verify wrong code {attempt} of 5", "POST", "/auth/mfa/verify", 400,
                     "invalid_mfa_code", body={"challenge": challenge, "code": locked_app.wrong()})
    locked = c.call(inst, "verify locked out (the right code)", "POST", "/auth/mfa/verify", 429,
                    body={"challenge": challenge, "code": locked_app.code()})
    retry_after = int(locked.headers.get("retry-after", "0") or 0)
    if not 1 <= retry_after <= 60:
        c.report.fail("[dev] verify locked out", f"Retry-After {retry_after}, expected 1..60")
    c.call(inst, "recovery codes locked out too", "POST", "/auth/mfa/recovery-codes", 429, bearer=session,
           body={"code": locked_app.used()})
    # Refusals that never look at a code answer for themselves, lock or not, and count nothing.
    refused_code(c, inst, "remove while locked, from an aal1 session", "DELETE", "/auth/mfa/totp", 403,
                 "aal2_required", bearer=session, body={"code": locked_app.used()})
    refused_code(c, inst, "confirm while locked, with the factor active", "POST", "/auth/mfa/totp/confirm", 409,
                 "mfa_already_enabled", bearer=session, body={"code": locked_app.used()})

    # account recovery by mail changes the password, not the second factor
    if log is not None:
        rid, mark = new_request_id("forgot"), log.mark()
        forgot(c, inst, "forgot (user with a factor)", locked_email, rid)
        token = dev_link(c, inst, log, "forgot link (user with a factor)", "recovery", rid, mark)
        c.call(inst, "reset (user with a factor)", "POST", "/auth/password/reset", 200,
               body={"token": token or "A" * 43, "newPassword": NEW_PASSWORD})
        challenge_of(c, inst, "sign-in after the reset (still a challenge)", locked_email, NEW_PASSWORD)


def flow_mfa_prod(c: Checker, inst: Instance, hook: WebhookReceiver | None, challenge_ttl: int) -> None:
    """Production with mfa_encryption_key and tokens_in_body=true: verify answers the
    tokens in its body as sign-in does; with a short mfa_challenge_ttl_seconds, an
    expired challenge is refused."""
    jwks = c.call(inst, "jwks (second factor)", "GET", "/.well-known/jwks.json", 200).json()
    email = unique_email("prodmfa")
    rid = new_request_id("signup")
    user_id = signup(c, inst, email, request_id=rid)
    if hook is not None:
        verify_by_webhook(c, inst, hook, email, rid)
    bearer = signin(c, inst, email, label="sign-in (before the second factor)").get("body", {}).get("accessToken", "")
    app = enrol(c, inst, "enroll", bearer, email)
    confirmed = c.call(inst, "confirm", "POST", "/auth/mfa/totp/confirm", 200, bearer=bearer,
                       body={"code": app.code()})
    recovery_codes(c, inst, "confirm", confirmed)
    challenge = challenge_of(c, inst, "sign-in (challenge)", email)
    verify_mfa(c, inst, "verify (tokens in body)", challenge, jwks, user_id, ("pwd", "otp"), code=app.code())
    if challenge_ttl > 0:
        expiring = challenge_of(c, inst, "sign-in (challenge to expire)", email)
        say(f"  (waiting {challenge_ttl + 1} s for mfa_challenge_ttl_seconds={challenge_ttl})")
        time.sleep(challenge_ttl + 1)
        refused_code(c, inst, "verify an expired challenge", "POST", "/auth/mfa/verify", 400, "invalid_challenge",
                     body={"challenge": expiring, "code": app.code()})


def flow_nomfa(c: Checker, inst: Instance) -> None:
    """Production with a signing key but no mfa_encryption_key: the second-factor routes
    answer 503; everything else works."""
    email = unique_email("nomfa")
    signup(c, inst, email)
    bearer = signin(c, inst, email).get("access", "")
    c.call(inst, "profile", "GET", "/user/profile", 200, bearer=bearer)
    c.call(inst, "enroll (no mfa_encryption_key)", "POST", "/auth/mfa/totp/enroll", 503, bearer=bearer)
    c.call(inst, "confirm (no mfa_encryption_key)", "POST", "/auth/mfa/totp/confirm", 503, bearer=bearer,
           body={"code": "123456"})
    c.call(inst, "remove (no mfa_encryption_key)", "DELETE", "/auth/mfa/totp", 503, bearer=bearer,
           body={"code": "123456"})
    c.call(inst, "recovery codes (no mfa_encryption_key)", "POST", "/auth/mfa/recovery-codes", 503, bearer=bearer,
           body={"code": "123456"})
    c.call(inst, "verify (no mfa_encryption_key)", "POST", "/auth/mfa/verify", 503,
           body={"challenge": f"{random_id()}.{'A' * 43}", "code": "123456"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--dev", required=True, help="base URL of the development instance")
    parser.add_argument("--prod", help="base URL of the production instance with tokens_in_body=true")
    parser.add_argument("--prod-kids", default="", help="comma-separated kids the production JWKS must list")
    parser.add_argument("--nokey", help="base URL of the production instance without a signing key")
    parser.add_argument("--tokens-out", help="write tokens of fresh sessions for schemathesis here (JSON)")
    parser.add_argument("--dev-log", help="the development instance's log (its recovery and verification links)")
    parser.add_argument("--webhook-port", type=int, help="receive the production instance's email webhook here")
    parser.add_argument("--webhook-secret", help="the production instance's email_webhook_secret (whsec_...)")
    parser.add_argument("--dev-data-dir", help="the development instance's --data-dir: with it, the admin API "
                        "flow (an admin made with `latch admin grant`)")
    parser.add_argument("--latch", help="the latch binary (`latch admin grant`)")
    parser.add_argument("--prod-challenge-ttl", type=int, default=0,
                        help="the production instance's mfa_challenge_ttl_seconds: with it, a challenge is let expire")
    parser.add_argument("--nomfa", help="base URL of a production instance with a signing key but no "
                        "mfa_encryption_key")
    args = parser.parse_args()

    report = Report()
    checker = Checker(args.spec, report)
    started = time.monotonic()
    print("== development instance (cookie_secure=false)", flush=True)
    dev = Instance("dev", args.dev, secure_cookies=False, behind_tls=False)
    tokens = flow_dev(checker, dev)
    if args.dev_log:
        print("== development instance: recovery and verification (links from its log)", flush=True)
        flow_email_dev(checker, dev, DevLog(args.dev_log))
    if args.dev_data_dir:
        print("== development instance: the admin API", flush=True)
        tokens.update(flow_admin(checker, dev, args.latch, args.dev_data_dir))
    print("== development instance: the second factor", flush=True)
    flow_mfa_dev(checker, dev, tokens.get("dev_admin"), DevLog(args.dev_log) if args.dev_log else None)
    hook = None
    if args.webhook_port and args.webhook_secret:
        hook = WebhookReceiver(args.webhook_port, args.webhook_secret)
    if args.prod:
        print("== production instance (tokens_in_body=true, Secure cookies)", flush=True)
        tokens["prod_access"] = flow_prod(
            checker,
            Instance("prod", args.prod, secure_cookies=True, behind_tls=True, tokens_in_body=True),
            [k for k in args.prod_kids.split(",") if k],
            hook,
        )
        print("== production instance: the second factor (tokens in body)", flush=True)
        flow_mfa_prod(checker, Instance("prod", args.prod, secure_cookies=True, behind_tls=True, tokens_in_body=True),
                      hook, args.prod_challenge_ttl)
    if args.nokey:
        print("== production instance without a signing key", flush=True)
        flow_nokey(checker, Instance("nokey", args.nokey, secure_cookies=True, behind_tls=True))
    if args.nomfa:
        print("== production instance without mfa_encryption_key", flush=True)
        flow_nomfa(checker, Instance("nomfa", args.nomfa, secure_cookies=True, behind_tls=True))
    if args.tokens_out:
        with open(args.tokens_out, "w", encoding="utf-8") as handle:
            json.dump(tokens, handle)

    documented = checker.documented()
    missing = sorted(documented - report.seen)
    # 405 answers are checked against MethodNotAllowed, HEAD against the GET beside it.
    undocumented = sorted(s for s in report.seen - documented if s[2] != "405" and s[0] != "HEAD")
    print(f"\n{len(documented - set(missing))}/{len(documented)} documented (operation, status) pairs exercised; "
          "not produced by this flow:")
    for method, template, status in missing:
        print(f"    {status} {method} {template}")
    if undocumented:
        report.fail("coverage", f"statuses answered but not documented: {undocumented}")
    elapsed = time.monotonic() - started
    verdict = "PASS" if not report.failures else f"FAIL ({len(report.failures)} distinct failures)"
    print(f"\nflow: {report.checked} responses checked in {elapsed:.1f}s: {verdict}")
    for line in report.summary():
        print(f"  - {line}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
