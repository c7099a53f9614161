#!/usr/bin/env bash
# Builds the Spin components, pushes the app as an OCI artefact, creates the Secret from
# environment variables when it does not exist yet, applies an overlay (with the
# per-deploy values: image, host, TLS issuer, ACME contact, database and email webhook
# origins, public URL, admin allow-list) and waits until every SpinApp's Deployment has rolled out.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source=lib/keys.sh
source "$SCRIPT_DIR/lib/keys.sh"

SECRET_NAME="latch-secrets"
LOCAL_REGISTRY="localhost:5001" # scripts/setup-kind-cluster.sh
# The ClusterIssuer this repository defines (k8s/components/production/clusterissuer.yaml)
# and its placeholders; deploys replace them and refuse to apply them unchanged.
REPO_TLS_ISSUER="latch-acme"
DEFAULT_ACME_SERVER="https://acme-v02.api.letsencrypt.org/directory"
PLACEHOLDER_ACME_EMAIL="acme-contact@example.com"
PLACEHOLDER_HOST="latch.example.com" # the Ingress files and k8s/base/common/certificate.yaml

usage() {
  cat <<'EOF'
Usage: scripts/deploy-to-k8s.sh [options]

  --overlay NAME     local (default), production or split (k8s/overlays/NAME)
  --image REF        OCI reference to push and deploy, with a tag or digest.
                     Required for production and split (e.g. ghcr.io/OWNER/latch:<git sha>);
                     local defaults to localhost:5001/latch:dev-<hash of the built wasm>
  --host HOST        public host name of the Ingress and its certificate
                     (production, split; or LATCH_HOST)
  --tls-issuer NAME  cert-manager ClusterIssuer that signs the Ingress certificate
                     (production, split; or LATCH_TLS_ISSUER). Default latch-acme, the
                     Let's Encrypt (ACME HTTP-01) issuer this repository defines and
                     applies; any other name must be a ClusterIssuer that already exists,
                     and latch-acme is then not applied.
  --acme-email ADDR  contact address of the ACME account (or LATCH_ACME_EMAIL); required
                     with --tls-issuer latch-acme (Let's Encrypt mails expiry warnings)
  --acme-server URL  ACME directory for latch-acme (or LATCH_ACME_SERVER); default Let's
                     Encrypt production. Staging, for trials (untrusted certificates,
                     far higher rate limits): https://acme-staging-v02.api.letsencrypt.org/directory
  --public-url URL   where users open the links of recovery and verification messages
                     (<URL>/reset-password?token=..., <URL>/verify-email?token=...: pages
                     of your front end; or LATCH_PUBLIC_URL). Default https://<host>
                     (production, split); the local overlay's https://localhost:8443
  --admin-cidrs LIST client addresses allowed to reach /admin/... (or LATCH_ADMIN_CIDRS):
                     comma-separated CIDR ranges, e.g. 203.0.113.0/24,198.51.100.7/32.
                     Default: the manifests' private ranges 10.0.0.0/8, 172.16.0.0/12,
                     192.168.0.0/16 (a VPN or bastion inside the VPC). Needs ingress-nginx
                     to see client addresses (docs/k8s-deployment.md, "Protecting /admin")
  --context NAME     kubectl context (default: kind-latch for local, else the current one)
  --skip-build       do not run `spin build` (CI builds in an earlier job)
  --skip-push        do not run `spin registry push` (the image is already there)
  --embedded-db      local only: db_type=sqlite, the shim's per-pod SQLite file instead of
                     SQLite Cloud (no account needed; every replica has its own users!)
  --update-secret    replace the Secret from the environment even if it exists, then
                     restart the pods so they read it (key rotation)
  --timeout DUR      how long to wait for the rollout (default 5m)
  --dry-run          print every command instead of running it; secret values print as
                     <redacted>. Still renders the overlay when a kubectl is available.
  --help             this text

Environment (read only when the Secret is created or updated; never printed):
  DATABASE_URL       sqlitecloud://<host>:8860/<database>?apikey=<key>  (not with --embedded-db)
  SIGNING_KEY        <kid>:<base64url 32-byte seed>; local generates one when unset
  VERIFICATION_KEYS  previous public keys, comma-separated <kid>:<base64url>; may be empty
  DATABASE_ORIGIN    outbound allow-list entry for the database; default https://<host of
                     DATABASE_URL>, else the ConfigMap's https://*.sqlite.cloud
  EMAIL_WEBHOOK_URL  where recovery and verification messages are POSTed (https:// outside
                     the local overlay); empty or unset: no webhook, and production
                     answers 503 to account recovery and to a verification resend
  EMAIL_WEBHOOK_SECRET
                     the webhook's signing secret, whsec_<base64 of at least 24 bytes>;
                     required with EMAIL_WEBHOOK_URL (docs/operations.md)
  EMAIL_WEBHOOK_ORIGIN
                     outbound allow-list entry for the webhook; default scheme://host[:port]
                     of EMAIL_WEBHOOK_URL, else of the existing Secret's email_webhook_url,
                     else the ConfigMap's https://*.invalid (nothing reachable)
  LATCH_REQUIRE_VERIFIED_EMAIL
                     true: sign-in answers 403 until the address is verified; unset keeps
                     the ConfigMap's value (false)
  MFA_ENCRYPTION_KEY the key sealing TOTP secrets: 32 random bytes, unpadded base64url
                     (openssl rand -base64 32 | tr '+/' '-_' | tr -d =). Unset: a replaced
                     Secret keeps the key it has; a new one gets a generated key locally
                     and none elsewhere (production then answers 503 on the second-factor
                     routes). Never a different key once users have enrolled
                     (docs/k8s-deployment.md, "Secrets and key rotation")
EOF
}

OVERLAY="local"
IMAGE=""
HOST="${LATCH_HOST:-}"
TLS_ISSUER="${LATCH_TLS_ISSUER:-$REPO_TLS_ISSUER}"
ACME_EMAIL="${LATCH_ACME_EMAIL:-}"
ACME_SERVER="${LATCH_ACME_SERVER:-$DEFAULT_ACME_SERVER}"
PUBLIC_URL="${LATCH_PUBLIC_URL:-}"
REQUIRE_VERIFIED_EMAIL="${LATCH_REQUIRE_VERIFIED_EMAIL:-}"
ADMIN_CIDRS="${LATCH_ADMIN_CIDRS:-}"
CONTEXT=""
SKIP_BUILD=0
SKIP_PUSH=0
EMBEDDED_DB=0
UPDATE_SECRET=0
TIMEOUT="5m"
while (($#)); do
  case "$1" in
    --overlay | --image | --host | --tls-issuer | --acme-email | --acme-server | --public-url | --admin-cidrs | --context | --timeout)
      need_value "$@"
      case "$1" in
        --overlay) OVERLAY="$2" ;;
        --image) IMAGE="$2" ;;
        --host) HOST="$2" ;;
        --tls-issuer) TLS_ISSUER="$2" ;;
        --acme-email) ACME_EMAIL="$2" ;;
        --acme-server) ACME_SERVER="$2" ;;
        --public-url) PUBLIC_URL="$2" ;;
        --admin-cidrs) ADMIN_CIDRS="$2" ;;
        --context) CONTEXT="$2" ;;
        --timeout) TIMEOUT="$2" ;;
      esac
      shift 2
      ;;
    --skip-build) SKIP_BUILD=1 && shift ;;
    --skip-push) SKIP_PUSH=1 && shift ;;
    --embedded-db) EMBEDDED_DB=1 && shift ;;
    --update-secret) UPDATE_SECRET=1 && shift ;;
    --dry-run) DRY_RUN=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# ------------------------------------------------------------------- arguments

is_overlay "$OVERLAY" || die "unknown overlay '$OVERLAY' (one of: ${LATCH_OVERLAYS[*]})"
TIMEOUT_S="$(duration_seconds "$TIMEOUT")"
if [[ "$OVERLAY" == local ]]; then
  [[ -z "$HOST" ]] || warn "--host is ignored for the local overlay (its host is localhost)"
  CONTEXT="${CONTEXT:-kind-latch}"
  # The local overlay already renamed the image to the local registry.
  IMAGE_NAME_IN_OVERLAY="$LOCAL_REGISTRY/latch"
else
  ((!EMBEDDED_DB)) || die "--embedded-db is for the local overlay only: production replicas must share one database"
  [[ -n "$IMAGE" ]] || die "--image is required for $OVERLAY (the tag is the commit being deployed)"
  [[ -n "$HOST" ]] || die "--host (or LATCH_HOST) is required for $OVERLAY"
  [[ "$HOST" != "$PLACEHOLDER_HOST" ]] || die "$PLACEHOLDER_HOST is the documented placeholder, not a host"
  [[ "$HOST" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$ ]] ||
    die "not a DNS host name: $HOST"
  [[ "$TLS_ISSUER" =~ ^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$ ]] || die "not a ClusterIssuer name: $TLS_ISSUER"
  if [[ "$TLS_ISSUER" == "$REPO_TLS_ISSUER" ]]; then
    # Checked strictly: both values are written into the deploy overlay's YAML.
    [[ -n "$ACME_EMAIL" ]] ||
      die "--acme-email (or LATCH_ACME_EMAIL) is required for the $REPO_TLS_ISSUER issuer; or --tls-issuer NAME for an existing ClusterIssuer"
    [[ "$ACME_EMAIL" != "$PLACEHOLDER_ACME_EMAIL" ]] || die "$PLACEHOLDER_ACME_EMAIL is the documented placeholder, not a contact"
    [[ "$ACME_EMAIL" =~ ^[A-Za-z0-9._%+-]+@[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$ ]] ||
      die "not an email address: $ACME_EMAIL"
    [[ "$ACME_SERVER" =~ ^https://[a-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*/?$ ]] ||
      die "--acme-server must be an https:// ACME directory URL, got '$ACME_SERVER'"
  else
    [[ -z "$ACME_EMAIL" ]] || warn "--acme-email is ignored: ClusterIssuer $TLS_ISSUER is configured where it was made"
  fi
  IMAGE_NAME_IN_OVERLAY="latch"
fi
if [[ -n "$IMAGE" ]]; then
  # registry/path with a :tag and/or @sha256:digest; a bare name would pull "latest".
  [[ "$IMAGE" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$ &&
    "$IMAGE" =~ (:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})$ ]] ||
    die "--image must be registry/path:tag or registry/path@sha256:digest, got '$IMAGE'"
fi
# Links are built as <public_url>/reset-password?token=...: no trailing slash.
PUBLIC_URL="${PUBLIC_URL%/}"
if [[ -z "$PUBLIC_URL" && "$OVERLAY" != local ]]; then
  PUBLIC_URL="https://$HOST"
  info "public_url: https://$HOST (the links in messages open https://$HOST/reset-password and" \
    "/verify-email; --public-url when your front end lives elsewhere)"
fi
if [[ -n "$PUBLIC_URL" ]]; then
  # Written into the deploy overlay's YAML: checked strictly.
  [[ "$PUBLIC_URL" =~ ^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*$ ]] ||
    die "--public-url must be http(s)://host[:port][/path] (no query), got '$PUBLIC_URL'"
  [[ "$OVERLAY" == local || "$PUBLIC_URL" == https://* ]] ||
    die "--public-url must be https:// for $OVERLAY: the links carry one-time tokens"
fi
case "$REQUIRE_VERIFIED_EMAIL" in
  "" | true | false) ;;
  *) die "LATCH_REQUIRE_VERIFIED_EMAIL must be true or false, got '$REQUIRE_VERIFIED_EMAIL'" ;;
esac
# The admin API's source allow-list (Ingress latch-admin, k8s/base/ingress-admin.yaml).
# Written into the deploy overlay's YAML: checked strictly, and never "everyone".
if [[ -n "$ADMIN_CIDRS" ]]; then
  ADMIN_CIDRS="${ADMIN_CIDRS// /}"
  IFS=, read -ra admin_ranges <<<"$ADMIN_CIDRS"
  ((${#admin_ranges[@]})) || die "--admin-cidrs is empty"
  for range in "${admin_ranges[@]}"; do
    [[ "$range" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}(/([0-9]|[12][0-9]|3[0-2]))?$ ||
      "$range" =~ ^[0-9a-fA-F]*:[0-9a-fA-F:.]*(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?$ ]] ||
      die "--admin-cidrs: not an address or CIDR range: '$range'"
    [[ "$range" != */0 ]] ||
      die "--admin-cidrs: $range admits every address; name your operators' ranges (the admin role is required either way)"
  done
  unset admin_ranges range
elif [[ "$OVERLAY" != local ]]; then
  info "admin API: /admin/... reachable from private addresses only (10.0.0.0/8, 172.16.0.0/12," \
    "192.168.0.0/16); --admin-cidrs (LATCH_ADMIN_CIDRS) for your operators' ranges"
fi
# The webhook URL is a secret (it may carry a token): checked here, never printed.
if [[ -n "${EMAIL_WEBHOOK_URL:-}" ]]; then
  [[ "$EMAIL_WEBHOOK_URL" =~ ^https?://[^/?#[:space:]]+([/?#][^[:space:]]*)?$ ]] ||
    die "EMAIL_WEBHOOK_URL must be an http(s) URL (its value is not shown)"
  [[ "$OVERLAY" == local || "$EMAIL_WEBHOOK_URL" == https://* ]] ||
    die "EMAIL_WEBHOOK_URL must be https:// for $OVERLAY: the messages carry one-time tokens"
fi
[[ -n "$CONTEXT" ]] && export KUBE_CONTEXT="$CONTEXT"

# ------------------------------------------------------------------- steps

check_prerequisites() {
  require_tool "$(kubectl_cmd)" "Install kubectl 1.31+ (https://kubernetes.io/docs/tasks/tools/)."
  if ((!SKIP_BUILD || !SKIP_PUSH)); then
    require_tool spin "Run scripts/install-spin.sh."
  fi
  ((SKIP_BUILD)) || require_tool cargo "Install Rust (https://rustup.rs) and: rustup target add wasm32-wasip2"
  if ((!DRY_RUN)); then
    local current
    current="$(kube config current-context 2>/dev/null || true)"
    info "kubectl context: ${KUBE_CONTEXT:-$current}"
    kube version >/dev/null 2>&1 || die "cannot reach the cluster of context ${KUBE_CONTEXT:-$current}"
    # The Certificate and ClusterIssuer are cert-manager objects: without it the apply
    # fails half-way ("no matches for kind").
    kube get crd certificates.cert-manager.io clusterissuers.cert-manager.io >/dev/null 2>&1 ||
      die "cert-manager is not installed in this cluster (scripts/setup-kind-cluster.sh, docs/k8s-deployment.md)"
    if [[ "$OVERLAY" != local && "$TLS_ISSUER" != "$REPO_TLS_ISSUER" ]]; then
      kube get clusterissuer "$TLS_ISSUER" >/dev/null 2>&1 ||
        die "ClusterIssuer $TLS_ISSUER does not exist; create it, or deploy with the default $REPO_TLS_ISSUER"
    fi
  fi
}

build_components() {
  ((SKIP_BUILD)) && return 0
  info "building the components (spin build)"
  run spin build --from "$LATCH_ROOT/spin.toml"
}

# The local tag: a hash of the built components, so a rebuild with changes gets a new tag
# (and the SpinApp a new image, and the pods a rollout) while an unchanged one does not.
local_image_ref() {
  local sources f hash
  mapfile -t sources < <(sed -n 's/^source = "\(.*\)"$/\1/p' "$LATCH_ROOT/spin.toml")
  for f in "${sources[@]}"; do
    if [[ ! -f "$LATCH_ROOT/$f" ]]; then
      if ((DRY_RUN)); then
        printf '%s/latch:dev-unbuilt' "$LOCAL_REGISTRY"
        return 0
      fi
      die "$f is not built; drop --skip-build"
    fi
  done
  ((${#sources[@]})) || die "spin.toml lists no component sources"
  hash="$(cd "$LATCH_ROOT" && sha256sum "${sources[@]}" | sha256sum | cut -c1-12)"
  printf '%s/latch:dev-%s' "$LOCAL_REGISTRY" "$hash"
}

push_image() {
  ((SKIP_PUSH)) && return 0
  info "pushing $IMAGE"
  if [[ "$OVERLAY" == local ]]; then
    # The kind registry speaks plain HTTP on loopback.
    run spin registry push --from "$LATCH_ROOT/spin.toml" --insecure "$IMAGE"
  else
    # Needs `spin registry login` beforehand (the workflow does it with its token).
    run spin registry push --from "$LATCH_ROOT/spin.toml" "$IMAGE"
  fi
}

# https://<host> of DATABASE_URL, for Spin's outbound allow-list (spin.toml
# allowed_outbound_hosts = database_origin). SQLite Cloud serves HTTP on 443.
database_origin() {
  if [[ -n "${DATABASE_ORIGIN:-}" ]]; then
    printf '%s' "$DATABASE_ORIGIN"
  elif [[ "${DATABASE_URL:-}" =~ ^sqlitecloud://([^@/]*@)?([a-z0-9.-]+)(:[0-9]+)?(/|\?|$) ]]; then
    printf 'https://%s' "${BASH_REMATCH[2]}"
  fi
}

# origin_of URL: scheme://host[:port] of an http(s) URL, user info dropped, host in lower
# case; nothing when URL is not one.
origin_of() {
  if [[ "$1" =~ ^(https?)://([^@/?#]*@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]+)?([/?#]|$) ]]; then
    printf '%s://%s%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3],,}" "${BASH_REMATCH[4]}"
  fi
}

# The email webhook's origin for Spin's outbound allow-list (spin.toml
# allowed_outbound_hosts = email_webhook_origin of signup, forgot and resend):
# EMAIL_WEBHOOK_ORIGIN, else from EMAIL_WEBHOOK_URL, else from the URL in the existing
# Secret (so a deploy without the secrets in its environment keeps delivering), else
# nothing (the ConfigMap's https://*.invalid).
webhook_origin() {
  local url=""
  if [[ -n "${EMAIL_WEBHOOK_ORIGIN:-}" ]]; then
    printf '%s' "$EMAIL_WEBHOOK_ORIGIN"
    return 0
  fi
  if [[ -n "${EMAIL_WEBHOOK_URL:-}" ]]; then
    url="$EMAIL_WEBHOOK_URL"
  elif ((!DRY_RUN)); then
    url="$(kube -n "$LATCH_NAMESPACE" get secret "$SECRET_NAME" -o jsonpath='{.data.email_webhook_url}' 2>/dev/null |
      base64 -d 2>/dev/null || true)"
  fi
  origin_of "$url"
}

# relative_path FROM_DIR TO: TO as seen from FROM_DIR (kustomize refuses absolute
# resource paths). Physical paths, so symlinked temp dirs (macOS /tmp) resolve right.
relative_path() {
  local from to depth up=""
  from="$(cd "$1" && pwd -P)"
  to="$(cd "$2" && pwd -P)"
  depth="$(tr -cd / <<<"$from" | wc -c)"
  while ((depth-- > 0)); do up+="../"; done
  printf '%s%s' "$up" "${to#/}"
}

# A kustomization in a temp dir on top of the chosen overlay: the per-deploy values
# (image, host, TLS issuer and ACME contact, database origin, admin allow-list) stay out
# of git.
write_deploy_overlay() {
  make_private_dir
  DEPLOY_DIR="$MADE_DIR"
  local origin hook literals=() repo tag="" digest="" last
  origin="$(database_origin)"
  [[ -n "$origin" ]] && literals+=("database_origin=$origin")
  ((EMBEDDED_DB)) && literals+=("db_type=sqlite")
  hook="$(webhook_origin)"
  if [[ -n "$hook" ]]; then
    # Written into the deploy overlay's YAML: checked strictly.
    [[ "$hook" =~ ^https?://([a-z0-9*.-]+|\[[0-9a-f:.]+\])(:[0-9]+)?$ ]] ||
      die "the email webhook origin must be scheme://host[:port], got '$hook'"
    [[ "$OVERLAY" == local || "$hook" == https://* ]] ||
      die "the email webhook origin must be https:// for $OVERLAY, got '$hook'"
    [[ "$hook" =~ :[0-9]+$ && ! "$hook" =~ :443$ ]] &&
      warn "the email webhook listens on ${hook##*:}: k8s/base/common/networkpolicy.yaml only lets the pods reach port 443"
    literals+=("email_webhook_origin=$hook")
  else
    warn "no email webhook origin (EMAIL_WEBHOOK_URL or EMAIL_WEBHOOK_ORIGIN unset, and none in the Secret):" \
      "the components may reach no webhook; production answers 503 to account recovery"
  fi
  [[ -n "$PUBLIC_URL" ]] && literals+=("public_url=$PUBLIC_URL")
  [[ -n "$REQUIRE_VERIFIED_EMAIL" ]] && literals+=("require_verified_email=$REQUIRE_VERIFIED_EMAIL")
  # registry[:port]/path[:tag][@digest]: a tag can only sit in the last path element.
  repo="${IMAGE%%@*}"
  [[ "$IMAGE" == *@* ]] && digest="${IMAGE#*@}"
  last="${repo##*/}"
  if [[ "$last" == *:* ]]; then
    tag="${last#*:}"
    repo="${repo%:*}"
  fi
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
    printf 'resources:\n  - %s\n' "$(relative_path "$DEPLOY_DIR" "$LATCH_K8S_DIR/overlays/$OVERLAY")"
    printf 'images:\n  - name: %s\n    newName: %s\n' "$IMAGE_NAME_IN_OVERLAY" "$repo"
    # A digest pins the content; kustomize then drops the tag.
    if [[ -n "$digest" ]]; then
      printf '    digest: %s\n' "$digest"
    else
      printf '    newTag: %s\n' "$tag"
    fi
    if ((${#literals[@]})); then
      printf 'configMapGenerator:\n  - name: latch-config\n    namespace: %s\n    behavior: merge\n    literals:\n' \
        "$LATCH_NAMESPACE"
      printf '      - %s\n' "${literals[@]}"
    fi
    [[ "$OVERLAY" != local || -n "$ADMIN_CIDRS" ]] && printf 'patches:\n'
    if [[ -n "$ADMIN_CIDRS" ]]; then
      cat <<EOF
  - target:
      kind: Ingress
      name: latch-admin
    patch: |-
      - op: replace
        path: /metadata/annotations/nginx.ingress.kubernetes.io~1whitelist-source-range
        value: "$ADMIN_CIDRS"
EOF
    fi
    if [[ "$OVERLAY" != local ]]; then
      cat <<EOF
  - target:
      kind: Ingress
    patch: |-
      - op: replace
        path: /spec/rules/0/host
        value: $HOST
      - op: replace
        path: /spec/tls/0/hosts/0
        value: $HOST
  - target:
      kind: Certificate
      name: latch-tls
    patch: |-
      - op: replace
        path: /spec/dnsNames/0
        value: $HOST
      - op: replace
        path: /spec/issuerRef/name
        value: $TLS_ISSUER
EOF
      if [[ "$TLS_ISSUER" == "$REPO_TLS_ISSUER" ]]; then
        cat <<EOF
  - target:
      kind: ClusterIssuer
      name: $REPO_TLS_ISSUER
    patch: |-
      - op: replace
        path: /spec/acme/email
        value: $ACME_EMAIL
      - op: replace
        path: /spec/acme/server
        value: $ACME_SERVER
EOF
      else
        # Another ClusterIssuer signs the certificate: leave ours out of the apply.
        cat <<EOF
  - patch: |-
      \$patch: delete
      apiVersion: cert-manager.io/v1
      kind: ClusterIssuer
      metadata:
        name: $REPO_TLS_ISSUER
EOF
      fi
    fi
  } >"$DEPLOY_DIR/kustomization.yaml"
  info "deploy overlay ($DEPLOY_DIR/kustomization.yaml):"
  sed 's/^/    | /' "$DEPLOY_DIR/kustomization.yaml" >&2
}

render() {
  RENDERED="$DEPLOY_DIR/rendered.yaml"
  info "rendering k8s/overlays/$OVERLAY"
  render_kustomization "$DEPLOY_DIR" >"$RENDERED"
  if [[ ! -s "$RENDERED" ]]; then
    ((DRY_RUN)) && return 0
    die "the overlay rendered nothing"
  fi
  if grep -qE "^  image: latch$|$PLACEHOLDER_HOST|$PLACEHOLDER_ACME_EMAIL" "$RENDERED"; then
    die "the rendered manifests still carry a placeholder image, host or ACME email"
  fi
  mapfile -t APPS < <(spinapp_names "$RENDERED")
  ((${#APPS[@]})) || die "no SpinApp in the rendered overlay"
  info "rendered $(grep -c '^kind:' "$RENDERED") objects; SpinApps: ${APPS[*]}; $(grep -m1 '^  image: ' "$RENDERED" | sed 's/^ *//')"
}

# secret_file NAME VALUE: write a secret value to a 0600 file (never to argv).
secret_file() {
  printf '%s' "$2" >"$SECRET_DIR/$1"
}

ensure_secret() {
  local exists=0 keys
  probe kube -n "$LATCH_NAMESPACE" get secret "$SECRET_NAME" && exists=1
  if ((exists && !UPDATE_SECRET)); then
    info "Secret $SECRET_NAME exists; leaving it as it is (--update-secret replaces it)"
    # Key names only, never values: a Secret made before the email webhook existed.
    # shellcheck disable=SC2016 # a go-template, not a shell expansion
    keys="$(kube -n "$LATCH_NAMESPACE" get secret "$SECRET_NAME" \
      -o go-template='{{range $k, $v := .data}}{{$k}} {{end}}' 2>/dev/null || true)"
    [[ " $keys " == *" email_webhook_url "* ]] ||
      warn "Secret $SECRET_NAME has no email_webhook_url: production answers 503 to account recovery" \
        "until it is added (--update-secret with EMAIL_WEBHOOK_URL and EMAIL_WEBHOOK_SECRET)"
    [[ " $keys " == *" mfa_encryption_key "* ]] ||
      warn "Secret $SECRET_NAME has no mfa_encryption_key: production answers 503 on the second-factor" \
        "routes until it is added (--update-secret with MFA_ENCRYPTION_KEY)"
    return 0
  fi
  make_private_dir
  SECRET_DIR="$MADE_DIR"
  local signing_key="${SIGNING_KEY:-}"
  if [[ -z "$signing_key" ]]; then
    [[ "$OVERLAY" == local ]] || die "SIGNING_KEY is not set (format <kid>:<base64url 32-byte seed>)"
    # A fresh Ed25519 seed for a throwaway local cluster (any 32 bytes are a valid seed).
    signing_key=$(new_signing_key "local-$(date -u +%Y%m%d)")
    info "SIGNING_KEY not set: generated a signing key for this local cluster"
  fi
  # <kid>:<base64url of 32 bytes> = 43 characters (44 with padding), optionally
  # :<public key>. Checked here so a malformed key fails the deploy instead of
  # every pod's /ready.
  [[ "$signing_key" =~ ^[^:[:space:]]+:[A-Za-z0-9_-]{43}=?(:[A-Za-z0-9_-]{43})?$ ]] ||
    die "SIGNING_KEY must be <kid>:<base64url 32-byte seed> (43 characters after the colon)"
  # The Secret carries the public key, so no request derives it from the seed.
  signing_key=$(with_public_key "$signing_key") || die "cannot derive the public key of SIGNING_KEY (openssl)"
  if ((!EMBEDDED_DB)); then
    [[ "${DATABASE_URL:-}" == sqlitecloud://* ]] ||
      die "DATABASE_URL must be set to sqlitecloud://<host>:8860/<database>?apikey=<key> (or use --embedded-db locally)"
  fi
  # The webhook: both or neither. The secret is whsec_ and the base64 of at least 24 bytes
  # (the components refuse a shorter key).
  local hook_url="${EMAIL_WEBHOOK_URL:-}" hook_secret="${EMAIL_WEBHOOK_SECRET:-}" key_bytes
  if [[ -n "$hook_url" ]]; then
    [[ "$hook_secret" =~ ^whsec_[A-Za-z0-9+/]+={0,2}$ ]] ||
      die "EMAIL_WEBHOOK_SECRET must be whsec_<base64> when EMAIL_WEBHOOK_URL is set (its value is not shown)"
    key_bytes="$(printf '%s' "${hook_secret#whsec_}" | base64 -d 2>/dev/null | wc -c)" || key_bytes=0
    ((key_bytes >= 24)) ||
      die "EMAIL_WEBHOOK_SECRET decodes to $key_bytes bytes; make one of 32: printf 'whsec_%s' \"\$(head -c 32 /dev/urandom | base64 -w0)\""
  elif [[ "$OVERLAY" != local ]]; then
    warn "EMAIL_WEBHOOK_URL is not set: no recovery or verification message can be sent," \
      "and production answers 503 to account recovery and to a verification resend"
  fi
  # The second factor's sealing key. It seals every TOTP secret, and another key leaves
  # every enrolled authenticator unusable: a Secret replaced without MFA_ENCRYPTION_KEY
  # keeps the key it has (read from the cluster into the private dir, never printed).
  local mfa_key="${MFA_ENCRYPTION_KEY:-}"
  if [[ -z "$mfa_key" ]] && ((exists)); then
    mfa_key="$(kube -n "$LATCH_NAMESPACE" get secret "$SECRET_NAME" -o jsonpath='{.data.mfa_encryption_key}' \
      2>/dev/null | base64 -d 2>/dev/null || true)"
    [[ -n "$mfa_key" ]] && info "MFA_ENCRYPTION_KEY not set: keeping the Secret's mfa_encryption_key"
  fi
  if [[ -z "$mfa_key" && "$OVERLAY" == local ]]; then
    mfa_key="$(head -c 32 /dev/urandom | bytes_b64url)"
    info "MFA_ENCRYPTION_KEY not set: generated one for this local cluster"
  elif [[ -z "$mfa_key" ]]; then
    warn "MFA_ENCRYPTION_KEY is not set: production answers 503 on the second-factor routes until it is" \
      "(make one with: openssl rand -base64 32 | tr '+/' '-_' | tr -d =)"
  fi
  [[ -z "$mfa_key" || "$mfa_key" =~ ^[A-Za-z0-9_-]{43}$ ]] ||
    die "MFA_ENCRYPTION_KEY must be 32 bytes in unpadded base64url, 43 characters (its value is not shown)"
  secret_file database_url "${DATABASE_URL:-}"
  secret_file signing_key "$signing_key"
  secret_file verification_keys "${VERIFICATION_KEYS:-}"
  secret_file email_webhook_url "$hook_url"
  secret_file email_webhook_secret "$hook_secret"
  secret_file mfa_encryption_key "$mfa_key"
  local -a create=(kube -n "$LATCH_NAMESPACE" create secret generic "$SECRET_NAME"
    "--from-file=database_url=$SECRET_DIR/database_url"
    "--from-file=signing_key=$SECRET_DIR/signing_key"
    "--from-file=verification_keys=$SECRET_DIR/verification_keys"
    "--from-file=email_webhook_url=$SECRET_DIR/email_webhook_url"
    "--from-file=email_webhook_secret=$SECRET_DIR/email_webhook_secret"
    "--from-file=mfa_encryption_key=$SECRET_DIR/mfa_encryption_key"
    --dry-run=client -o yaml)
  local verb=creating
  ((exists)) && verb=replacing
  ((DRY_RUN && UPDATE_SECRET)) && verb="creating or replacing"
  info "$verb Secret $SECRET_NAME from the environment"
  # create --dry-run=client | label | apply: creates or replaces, values only ever in
  # files and pipes. What is printed names the keys, never the values.
  run_shown "kubectl -n $LATCH_NAMESPACE create secret generic $SECRET_NAME --from-file=database_url=<redacted> \
--from-file=signing_key=<redacted> --from-file=verification_keys=<redacted> \
--from-file=email_webhook_url=<redacted> --from-file=email_webhook_secret=<redacted> \
--from-file=mfa_encryption_key=<redacted> --dry-run=client -o yaml \
| kubectl label --local -f - app.kubernetes.io/part-of=latch -o yaml | kubectl apply -f -" \
    secret_pipeline "${create[@]}"
  # Pods read the Secret at start: a replaced one needs a restart (shown in a dry run,
  # which cannot know whether the Secret exists).
  SECRET_CHANGED=$((exists || (DRY_RUN && UPDATE_SECRET)))
}

secret_pipeline() {
  "$@" | kube label --local -f - app.kubernetes.io/part-of=latch -o yaml | kube apply -f - >/dev/null
}

apply_manifests() {
  info "applying the namespace and the SpinAppExecutor first (the operator's webhook needs the executor)"
  run kube apply -f "$RENDERED" --selector latch/apply-phase=bootstrap
  ensure_secret
  info "applying k8s/overlays/$OVERLAY"
  run kube apply -f "$RENDERED"
  # k8s/collector reads its Grafana Cloud credentials from a Secret of its own; without
  # it the collector pod cannot start and telemetry goes nowhere (the app still serves).
  if grep -q '^  name: otel-collector$' "$RENDERED" && ! ((DRY_RUN)) &&
    ! kube -n "$LATCH_NAMESPACE" get secret otel-collector-grafana-cloud >/dev/null 2>&1; then
    warn "Secret otel-collector-grafana-cloud is missing: the collector cannot start" \
      "(k8s/collector/collector-secret.yaml.template, docs/grafana-cloud-setup.md)"
  fi
}

wait_for_rollout() {
  local app i
  for app in "${APPS[@]:-latch}"; do
    info "waiting for deployment/$app (created by the operator)"
    if ((!DRY_RUN)); then
      for ((i = 0; i < TIMEOUT_S; i += 5)); do
        kube -n "$LATCH_NAMESPACE" get deployment "$app" >/dev/null 2>&1 && break
        sleep 5
      done
    fi
    if ((${SECRET_CHANGED:-0})); then
      # New Secret values reach the pods only through a restart. The operator's
      # server-side apply does not own this annotation, so it stays.
      run kube -n "$LATCH_NAMESPACE" rollout restart "deployment/$app"
    fi
    run kube -n "$LATCH_NAMESPACE" rollout status "deployment/$app" --timeout="${TIMEOUT_S}s"
  done
}

check_prerequisites
build_components
[[ -n "$IMAGE" ]] || IMAGE="$(local_image_ref)"
push_image
write_deploy_overlay
render
apply_manifests
wait_for_rollout
info "deployed $IMAGE with k8s/overlays/$OVERLAY. Check it: scripts/validate-deployment.sh$(
  [[ -n "${KUBE_CONTEXT:-}" ]] && printf ' --context %s' "$KUBE_CONTEXT"
)"
