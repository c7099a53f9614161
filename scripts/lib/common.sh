# shellcheck shell=bash
# Shared helpers for the Kubernetes scripts in scripts/. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Conventions every script follows:
# - `set -euo pipefail`, `--help`, and `--dry-run`.
# - Every command that changes something (cluster, registry, files outside a temp dir)
#   goes through `run`, so `--dry-run` prints it instead of running it. Commands that only
#   read cluster state go through `probe`, which answers "no" in a dry run (so the dry run
#   shows the full "create everything" path) without touching a cluster.
# - Secret values never reach argv (they would show in `ps` and in dry-run output): they
#   are written to 0600 files in a private temp dir, and printed as <redacted>.

# Guard against double sourcing.
[[ -n "${LATCH_COMMON_SH:-}" ]] && return 0
LATCH_COMMON_SH=1
# Command substitutions fail the script like any other command.
shopt -s inherit_errexit

LATCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034 # read by the scripts that source this file
LATCH_K8S_DIR="$LATCH_ROOT/k8s"
# Namespace of every overlay (k8s/base/kustomization.yaml, k8s/overlays/split).
LATCH_NAMESPACE="${LATCH_NAMESPACE:-latch}"
LATCH_OVERLAYS=(local production split)
DRY_RUN=0

if [[ -t 2 ]]; then
  _c_red=$'\033[31m' _c_yel=$'\033[33m' _c_grn=$'\033[32m' _c_dim=$'\033[2m' _c_off=$'\033[0m'
else
  _c_red='' _c_yel='' _c_grn='' _c_dim='' _c_off=''
fi

info() { printf '%s==>%s %s\n' "$_c_grn" "$_c_off" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_c_yel" "$_c_off" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_c_red" "$_c_off" "$*" >&2
  exit 1
}

# Print a command the way a shell would read it back.
_quote_cmd() {
  local out='' arg
  for arg in "$@"; do
    out+="$(printf '%q' "$arg") "
  done
  printf '%s' "${out% }"
}

# run CMD...: run a command, or print it in a dry run. `run kube ...` is printed and run
# as the real kubectl command line (with --context when KUBE_CONTEXT is set).
run() {
  if [[ "$1" == kube ]]; then
    shift
    local -a kube_argv=("$(kubectl_cmd)")
    [[ -n "${KUBE_CONTEXT:-}" ]] && kube_argv+=(--context "$KUBE_CONTEXT")
    set -- "${kube_argv[@]}" "$@"
  fi
  if ((DRY_RUN)); then
    printf '%s[dry-run]%s %s\n' "$_c_dim" "$_c_off" "$(_quote_cmd "$@")"
    return 0
  fi
  printf '%s+ %s%s\n' "$_c_dim" "$(_quote_cmd "$@")" "$_c_off" >&2
  "$@"
}

# run_shown TEXT CMD...: like run, but prints TEXT instead of the command (used where
# the real command line carries something that must not be printed).
run_shown() {
  local shown="$1"
  shift
  if ((DRY_RUN)); then
    printf '%s[dry-run]%s %s\n' "$_c_dim" "$_c_off" "$shown"
    return 0
  fi
  printf '%s+ %s%s\n' "$_c_dim" "$shown" "$_c_off" >&2
  "$@"
}

# probe CMD...: a read-only question to a cluster or tool; false in a dry run.
probe() {
  if ((DRY_RUN)); then
    return 1
  fi
  "$@" >/dev/null 2>&1
}

have() { command -v "$1" >/dev/null 2>&1; }

# require_tool NAME HINT: the tool must exist; in a dry run a missing tool is only noted,
# because a dry run must work on a machine without docker, kind, helm, spin or a cluster.
require_tool() {
  local name="$1" hint="$2"
  if have "$name"; then
    return 0
  fi
  if ((DRY_RUN)); then
    warn "'$name' is not installed (fine for --dry-run; needed for a real run): $hint"
    return 0
  fi
  die "'$name' is required but not on PATH. $hint"
}

# need_value OPTION VALUE: fail clearly when an option that takes a value has none.
need_value() {
  [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "option $1 needs a value (see --help)"
}

# is_overlay NAME: is NAME one of the overlays in k8s/overlays?
is_overlay() {
  local o
  for o in "${LATCH_OVERLAYS[@]}"; do
    [[ "$o" == "$1" ]] && return 0
  done
  return 1
}

# kubectl_cmd: the kubectl to use. LATCH_KUBECTL lets scripts/checks/k8s.sh hand over
# the kubectl it unpacked from PyPI on machines that have none.
kubectl_cmd() {
  printf '%s' "${LATCH_KUBECTL:-kubectl}"
}

# kube ARGS...: kubectl with the optional --context from KUBE_CONTEXT.
kube() {
  local k
  k="$(kubectl_cmd)"
  if [[ -n "${KUBE_CONTEXT:-}" ]]; then
    "$k" --context "$KUBE_CONTEXT" "$@"
  else
    "$k" "$@"
  fi
}

# render_kustomization DIR: print the rendered manifests of a kustomization directory.
# Rendering only reads files, so it runs in a dry run too when a kubectl is available:
# that is how --dry-run proves the overlay a real run would apply renders at all.
render_kustomization() {
  local dir="$1" k
  k="$(kubectl_cmd)"
  if ! have "$k"; then
    if ((DRY_RUN)); then
      warn "no kubectl: skipping the render of $dir (set LATCH_KUBECTL or install kubectl)"
      return 0
    fi
    die "kubectl is required to render $dir"
  fi
  "$k" kustomize "$dir"
}

# on_exit CMD...: register cleanup to run when the script exits (last registered runs
# first). One EXIT trap for everything, so scripts never overwrite each other's traps.
LATCH_EXIT_HOOKS=()
on_exit() {
  LATCH_EXIT_HOOKS+=("$(_quote_cmd "$@")")
}
_run_exit_hooks() {
  local status=$? i
  for ((i = ${#LATCH_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
    eval "${LATCH_EXIT_HOOKS[i]}" || true
  done
  return "$status"
}
trap _run_exit_hooks EXIT

# make_private_dir: a temp dir only the current user can read, removed on exit.
# Sets the global MADE_DIR (a command substitution would run in a subshell and lose the
# cleanup registration).
make_private_dir() {
  MADE_DIR="$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/latch.XXXXXXXX")"
  on_exit rm -rf -- "$MADE_DIR"
}

# duration_seconds 90|90s|5m: a duration in seconds.
duration_seconds() {
  [[ "$1" =~ ^([0-9]+)([smh]?)$ ]] || die "not a duration: '$1' (use e.g. 90, 90s, 5m, 1h)"
  local n="${BASH_REMATCH[1]}"
  case "${BASH_REMATCH[2]}" in
    h) printf '%d' "$((10#$n * 3600))" ;;
    m) printf '%d' "$((10#$n * 60))" ;;
    *) printf '%d' "$((10#$n))" ;;
  esac
}

# positive_int NAME VALUE
positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# spinapp_names FILE: the names of the SpinApps in a rendered (kustomize-sorted) file.
spinapp_names() {
  awk '
    /^---/ { kind = ""; name = ""; next }
    /^kind: / { kind = $2 }
    /^[a-zA-Z]/ { in_meta = ($0 == "metadata:") }
    in_meta && /^  name: / { name = $2 }
    kind == "SpinApp" && name != "" { print name; kind = "" }
  ' "$1"
}

# ------------------------------------------------------------------ check steps
# The check scripts (scripts/checks/*.sh) run every step even after a failure, so
# one run shows every problem; they end with a summary and fail if any step did.
PASSED=0
FAILED=0
FAILED_STEPS=()

# step LABEL CMD...: run one check, record the outcome, never abort the run.
step() {
  local label="$1" t0=$SECONDS status=0
  shift
  info "$label"
  "$@" || status=$?
  if ((status == 0)); then
    PASSED=$((PASSED + 1))
    printf 'ok   %s (%ds)\n' "$label" "$((SECONDS - t0))"
  else
    FAILED=$((FAILED + 1))
    FAILED_STEPS+=("$label")
    printf 'FAIL %s (exit %d, %ds)\n' "$label" "$status" "$((SECONDS - t0))"
  fi
}

# setup_venv REQUIREMENTS CACHE_DIR: a venv with the pinned tools, reused while the
# requirements file is unchanged (keyed by its hash). Sets VENV.
setup_venv() {
  local req="$1" cache="$2" key
  key="$(sha256sum "$req" | cut -c1-16)"
  VENV="$cache/venv-$key"
  if [[ -x "$VENV/bin/python" && -f "$VENV/.complete" ]]; then
    return 0
  fi
  info "creating the check tools' venv in $VENV"
  # `|| return`: errexit does not apply inside a function called from `step`'s `||`.
  rm -rf "$VENV"
  "${PYTHON:-python3}" -m venv "$VENV" || return 1
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" || return 1
  touch "$VENV/.complete"
}
