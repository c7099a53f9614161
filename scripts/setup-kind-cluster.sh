#!/usr/bin/env bash
# Creates a local kind cluster that runs Spin apps the way production does: the
# containerd-shim-spin on the node (installed by SpinKube's Runtime Class Manager, with
# SystemdCgroup = true so pod CPU/memory metrics, and so the HPA, work), cert-manager
# with the self-signed ClusterIssuer of the local Ingress certificate, the spin-operator
# CRDs and chart, metrics-server, ingress-nginx, and a local OCI registry for
# `spin registry push`. Idempotent: run it again to finish or repair a
# half-made setup; what exists is kept.
#
# The SpinAppExecutor is not installed here: the operator looks it up in the SpinApp's
# namespace, so it ships with the application (k8s/base/common/spinappexecutor.yaml).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

# ---- pinned versions (bump together, then run scripts/checks/k8s.sh and this script)
KIND_VERSION="v0.29.0"
# The digest from kind v0.29.0's release notes: a node image built for that release.
KIND_NODE_IMAGE="kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"
CERT_MANAGER_VERSION="v1.18.2"
RUNTIME_CLASS_MANAGER_VERSION="0.2.0"
# containerd-shim-spin v0.24.0 embeds Spin 3.6.3, the runtime Latch is built for.
SHIM_VERSION="v0.24.0"
SPIN_OPERATOR_VERSION="0.6.1"
METRICS_SERVER_CHART_VERSION="3.12.2" # metrics-server v0.7.2
INGRESS_NGINX_VERSION="controller-v1.12.1"
REGISTRY_IMAGE="registry:2.8.3"
# ----

CLUSTER_NAME="latch"
REGISTRY_NAME="kind-registry"
REGISTRY_PORT="5001" # k8s/overlays/local pushes to localhost:5001
INGRESS_HTTP_PORT="8080"
INGRESS_HTTPS_PORT="8443"
WAIT_TIMEOUT="300s"
# The issuer of the local Ingress certificate (k8s/overlays/local applies it too).
LOCAL_ISSUER_FILE="$LATCH_K8S_DIR/overlays/local/clusterissuer.yaml"
LOCAL_ISSUER="latch-selfsigned"

usage() {
  cat <<EOF
Usage: scripts/setup-kind-cluster.sh [--name NAME] [--dry-run] [--help]

Creates (or completes) the kind cluster "$CLUSTER_NAME" for Latch:
  kind $KIND_VERSION, node ${KIND_NODE_IMAGE%@*}
  local registry $REGISTRY_IMAGE on localhost:$REGISTRY_PORT
  cert-manager $CERT_MANAGER_VERSION + ClusterIssuer $LOCAL_ISSUER (self-signed, the local Ingress certificate)
  runtime-class-manager $RUNTIME_CLASS_MANAGER_VERSION + containerd-shim-spin $SHIM_VERSION
    (RuntimeClass wasmtime-spin-v2, SystemdCgroup = true, checked on the node)
  spin-operator $SPIN_OPERATOR_VERSION (CRDs + Helm chart)
  metrics-server chart $METRICS_SERVER_CHART_VERSION (--kubelet-insecure-tls, as kind needs)
  ingress-nginx $INGRESS_NGINX_VERSION on localhost:$INGRESS_HTTP_PORT / localhost:$INGRESS_HTTPS_PORT

Needs docker, kind, kubectl, helm (3.8+), and spin with the kube plugin
(scripts/install-spin.sh --with-kube-plugin). Safe to re-run.

Options:
  --name NAME   cluster name (default: $CLUSTER_NAME; kubectl context kind-NAME)
  --dry-run     print every command instead of running it (no docker/kind/cluster needed)
  --help        this text
EOF
}

while (($#)); do
  case "$1" in
    --name)
      need_value "$@"
      CLUSTER_NAME="$2"
      shift 2
      ;;
    --dry-run)
      DRY_RUN=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$CLUSTER_NAME" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "invalid cluster name: $CLUSTER_NAME"
export KUBE_CONTEXT="kind-$CLUSTER_NAME"

check_prerequisites() {
  info "checking prerequisites"
  require_tool docker "Install Docker Engine (https://docs.docker.com/engine/install/)."
  require_tool kind "Install kind $KIND_VERSION (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)."
  require_tool kubectl "Install kubectl 1.31+ (https://kubernetes.io/docs/tasks/tools/)."
  require_tool helm "Install Helm 3.8+ (https://helm.sh/docs/intro/install/); OCI charts need 3.8."
  require_tool spin "Run scripts/install-spin.sh --with-kube-plugin."
  if ((DRY_RUN)); then
    return 0
  fi
  docker info >/dev/null 2>&1 || die "docker is installed but not usable by $(id -un): is the daemon running?"
  local kind_version
  kind_version="$(kind version 2>/dev/null | awk '{print $2}')"
  [[ "$kind_version" == "$KIND_VERSION" ]] ||
    warn "kind is $kind_version; this script is tested against $KIND_VERSION (node images are per release)"
  spin kube --help >/dev/null 2>&1 ||
    die "the spin kube plugin is missing: spin plugins install kube --version 0.4.0 --yes"
}

# registry_state: "true" (running), "false" (stopped) or "" (absent); "" in a dry run.
registry_state() {
  ((DRY_RUN)) && return 0
  docker inspect --format '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true
}

start_registry() {
  case "$(registry_state)" in
    true) info "registry $REGISTRY_NAME already running" ;;
    false) run docker start "$REGISTRY_NAME" ;;
    *)
      info "starting the local registry on localhost:$REGISTRY_PORT"
      # Bound to 127.0.0.1 only: nothing off this machine can push to it.
      run docker run --detach --restart=always --name "$REGISTRY_NAME" \
        --publish "127.0.0.1:$REGISTRY_PORT:5000" "$REGISTRY_IMAGE"
      ;;
  esac
}

create_cluster() {
  if ! ((DRY_RUN)) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    info "kind cluster $CLUSTER_NAME already exists"
    return 0
  fi
  info "creating kind cluster $CLUSTER_NAME"
  make_private_dir
  local config="$MADE_DIR/kind.yaml"
  # Node labels: ingress-ready for ingress-nginx's kind manifest, spin for the Shim's
  # nodeSelector. The registry patch makes containerd read per-registry hosts.toml.
  cat >"$config" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $CLUSTER_NAME
nodes:
  - role: control-plane
    image: $KIND_NODE_IMAGE
    labels:
      ingress-ready: "true"
      spin: "true"
    extraPortMappings:
      - containerPort: 80
        hostPort: $INGRESS_HTTP_PORT
        listenAddress: 127.0.0.1
        protocol: TCP
      - containerPort: 443
        hostPort: $INGRESS_HTTPS_PORT
        listenAddress: 127.0.0.1
        protocol: TCP
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
EOF
  if ((DRY_RUN)); then
    sed 's/^/    | /' "$config"
  fi
  run kind create cluster --name "$CLUSTER_NAME" --config "$config" --wait 120s
}

connect_registry() {
  info "wiring localhost:$REGISTRY_PORT inside the node to the registry container"
  local node nodes=("$CLUSTER_NAME-control-plane")
  if ! ((DRY_RUN)); then
    mapfile -t nodes < <(kind get nodes --name "$CLUSTER_NAME")
  fi
  for node in "${nodes[@]}"; do
    # The hosts.toml below only counts if containerd reads certs.d (the config patch at
    # cluster creation; recent node images set it on their own).
    if ! ((DRY_RUN)) && ! docker exec "$node" grep -q 'config_path = "/etc/containerd/certs.d"' /etc/containerd/config.toml; then
      die "$node: containerd does not read /etc/containerd/certs.d; the local registry would be unreachable"
    fi
    run docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:$REGISTRY_PORT"
    run_shown "docker exec -i $node tee /etc/containerd/certs.d/localhost:$REGISTRY_PORT/hosts.toml <<< '[host.\"http://$REGISTRY_NAME:5000\"]'" \
      docker exec -i "$node" sh -c "cat > /etc/containerd/certs.d/localhost:$REGISTRY_PORT/hosts.toml" \
      <<<"[host.\"http://$REGISTRY_NAME:5000\"]"
  done
  if ((DRY_RUN)) ||
    ! docker network inspect kind --format '{{range .Containers}}{{.Name}} {{end}}' | grep -qw "$REGISTRY_NAME"; then
    run docker network connect kind "$REGISTRY_NAME"
  fi
  # The documented way for tools to discover a cluster's local registry (KEP-1755).
  run_shown "kubectl apply -f - (ConfigMap kube-public/local-registry-hosting: localhost:$REGISTRY_PORT)" \
    kube apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:$REGISTRY_PORT"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
}

install_cert_manager() {
  info "cert-manager $CERT_MANAGER_VERSION (the spin-operator's webhook certificates, the Ingress certificate)"
  run kube apply --server-side --force-conflicts \
    -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  run kube -n cert-manager wait --for=condition=Available --timeout="$WAIT_TIMEOUT" \
    deployment/cert-manager deployment/cert-manager-webhook deployment/cert-manager-cainjector
  install_local_issuer
}

# The self-signed ClusterIssuer that signs the local Ingress certificate (localhost).
# cert-manager's webhook often refuses connections for a few seconds after its
# Deployment is Available (its serving certificate is still being injected), so the
# first apply is retried; a Ready issuer proves cert-manager works end to end.
install_local_issuer() {
  info "ClusterIssuer $LOCAL_ISSUER (${LOCAL_ISSUER_FILE#"$LATCH_ROOT"/})"
  if ((DRY_RUN)); then
    run kube apply -f "$LOCAL_ISSUER_FILE"
  else
    local i
    for ((i = 1; ; i++)); do
      run kube apply -f "$LOCAL_ISSUER_FILE" && break
      ((i < 12)) || die "cert-manager's webhook did not accept ClusterIssuer $LOCAL_ISSUER"
      warn "cert-manager's webhook is not answering yet; retrying in 5 s ($i/12)"
      sleep 5
    done
  fi
  run kube wait --for=condition=Ready --timeout="$WAIT_TIMEOUT" "clusterissuer/$LOCAL_ISSUER"
}

install_shim() {
  info "runtime-class-manager $RUNTIME_CLASS_MANAGER_VERSION and containerd-shim-spin $SHIM_VERSION"
  run helm upgrade --install runtime-class-manager oci://ghcr.io/spinframework/charts/runtime-class-manager \
    --kube-context "$KUBE_CONTEXT" --namespace runtime-class-manager --create-namespace \
    --version "$RUNTIME_CLASS_MANAGER_VERSION" --wait --timeout "$WAIT_TIMEOUT"
  # The Shim resource published with the shim release: it sets the containerd runtime
  # option SystemdCgroup = "true" and creates RuntimeClass wasmtime-spin-v2.
  run kube apply -f \
    "https://github.com/spinframework/containerd-shim-spin/releases/download/$SHIM_VERSION/runtime-class-manager-shim-v1alpha1-$SHIM_VERSION.yaml"
  run kube label node --all spin=true --overwrite
  wait_for_shim
  run kube get runtimeclass wasmtime-spin-v2
  ensure_systemd_cgroup
}

wait_for_shim() {
  if ((DRY_RUN)); then
    run kube get shim spin-v2 -o 'jsonpath={.status.nodesReady}/{.status.nodes}'
    return 0
  fi
  local i ready total
  for ((i = 0; i < 60; i++)); do
    ready="$(kube get shim spin-v2 -o 'jsonpath={.status.nodesReady}' 2>/dev/null || true)"
    total="$(kube get shim spin-v2 -o 'jsonpath={.status.nodes}' 2>/dev/null || true)"
    if [[ -n "$ready" && "$ready" != 0 && "$ready" == "$total" ]]; then
      info "shim installed on $ready/$total nodes"
      return 0
    fi
    sleep 5
  done
  kube get shim spin-v2 -o yaml || true
  die "the Shim spin-v2 did not become ready on every node labelled spin=true"
}

# The known SpinKube pitfall: runwasi defaults to cgroupfs while kind's kubelet uses the
# systemd driver; the kubelet then finds no pod cgroup stats, `kubectl top` stays flat
# and the HPA never scales. Check the node's containerd config instead of trusting it.
ensure_systemd_cgroup() {
  local node nodes=("$CLUSTER_NAME-control-plane") conf=/etc/containerd/config.toml
  if ! ((DRY_RUN)); then
    mapfile -t nodes < <(kind get nodes --name "$CLUSTER_NAME")
  fi
  for node in "${nodes[@]}"; do
    if ((DRY_RUN)); then
      run docker exec "$node" grep -n -A3 'runtimes.*spin.*options' "$conf"
      continue
    fi
    if docker exec "$node" awk '
        /^\[/ { in_spin = ($0 ~ /runtimes\.[^]]*spin[^]]*\.options\]/) }
        in_spin && /SystemdCgroup[[:space:]]*=[[:space:]]*"?true"?/ { found = 1 }
        END { exit !found }' "$conf"; then
      info "$node: spin runtime runs with SystemdCgroup = true"
    else
      docker exec "$node" grep -n -B1 -A3 spin "$conf" || true
      die "$node: the spin runtime in $conf lacks SystemdCgroup = true; pod metrics (and the HPA) \
would stay flat. Add it under the spin runtime's .options table, then: docker exec $node systemctl restart containerd"
    fi
  done
}

install_spin_operator() {
  info "spin-operator $SPIN_OPERATOR_VERSION"
  run kube apply --server-side --force-conflicts \
    -f "https://github.com/spinframework/spin-operator/releases/download/v$SPIN_OPERATOR_VERSION/spin-operator.crds.yaml"
  run helm upgrade --install spin-operator oci://ghcr.io/spinframework/charts/spin-operator \
    --kube-context "$KUBE_CONTEXT" --namespace spin-operator --create-namespace \
    --version "$SPIN_OPERATOR_VERSION" --wait --timeout "$WAIT_TIMEOUT"
  # k8s/ relies on these SpinApp fields: an older CRD would prune them silently.
  local field
  for field in enableAutoscaling components serviceAccountName podLabels checks.readiness; do
    run kube explain "spinapp.spec.$field" --api-version=core.spinkube.dev/v1alpha1
  done
}

install_metrics_server() {
  info "metrics-server (chart $METRICS_SERVER_CHART_VERSION)"
  run helm upgrade --install metrics-server metrics-server \
    --repo https://kubernetes-sigs.github.io/metrics-server/ \
    --kube-context "$KUBE_CONTEXT" --namespace kube-system \
    --version "$METRICS_SERVER_CHART_VERSION" \
    --set 'args={--kubelet-insecure-tls}' --wait --timeout "$WAIT_TIMEOUT"
  # kind's kubelets serve self-signed certificates, hence --kubelet-insecure-tls; never
  # copy that flag to a real cluster.
}

install_ingress_nginx() {
  info "ingress-nginx $INGRESS_NGINX_VERSION (kind provider manifest, hostPort 80/443)"
  run kube apply \
    -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX_VERSION/deploy/static/provider/kind/deploy.yaml"
  run kube -n ingress-nginx wait --for=condition=Ready pod \
    --selector=app.kubernetes.io/component=controller --timeout="$WAIT_TIMEOUT"
}

check_prerequisites
start_registry
create_cluster
connect_registry
install_cert_manager
install_shim
install_spin_operator
install_metrics_server
install_ingress_nginx

info "cluster $CLUSTER_NAME is ready (context $KUBE_CONTEXT). Next:"
printf '  scripts/deploy-to-k8s.sh --overlay local\n  scripts/validate-deployment.sh --host localhost --http-port %s --https-port %s\n' \
  "$INGRESS_HTTP_PORT" "$INGRESS_HTTPS_PORT" >&2
