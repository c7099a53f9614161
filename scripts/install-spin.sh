#!/usr/bin/env bash
# Installs the pinned Spin CLI (the version containerd-shim-spin v0.24.0 embeds, so what
# `spin build` / `spin registry push` produce is what the cluster runs), checked against
# the release's checksum list, and optionally the `kube` plugin.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

SPIN_VERSION="${SPIN_VERSION:-v3.6.3}"
SPIN_KUBE_PLUGIN_VERSION="${SPIN_KUBE_PLUGIN_VERSION:-0.4.0}"
SPIN_RELEASES="https://github.com/spinframework/spin/releases/download"

usage() {
  cat <<EOF
Usage: scripts/install-spin.sh [--dir DIR] [--with-kube-plugin] [--dry-run] [--help]

Installs Spin $SPIN_VERSION into DIR (default: \$HOME/.local/bin).

  --dir DIR            where to put the spin binary
  --with-kube-plugin   also install the kube plugin $SPIN_KUBE_PLUGIN_VERSION (spin kube scaffold)
  --dry-run            print the commands instead of running them
  --help               this text

The tarball is checked against the release's checksums-$SPIN_VERSION.txt; set
SPIN_SHA256 to also pin its hash from a source you trust. The tarball also carries a
keyless cosign signature (spin.sig, crt.pem) for those who verify with cosign.
EOF
}

DEST="$HOME/.local/bin"
KUBE_PLUGIN=0
while (($#)); do
  case "$1" in
    --dir)
      need_value "$@"
      DEST="$2"
      shift 2
      ;;
    --with-kube-plugin)
      KUBE_PLUGIN=1
      shift
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

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) asset_os=linux asset_arch=amd64 ;;
  Linux/aarch64 | Linux/arm64) asset_os=linux asset_arch=aarch64 ;;
  Darwin/x86_64) asset_os=macos asset_arch=amd64 ;;
  Darwin/arm64) asset_os=macos asset_arch=aarch64 ;;
  *) die "no Spin release for $(uname -s)/$(uname -m)" ;;
esac
asset="spin-${SPIN_VERSION}-${asset_os}-${asset_arch}.tar.gz"
sums="checksums-${SPIN_VERSION}.txt"

require_tool curl "install curl (apt-get install curl)"
require_tool sha256sum "install coreutils"

make_private_dir
work="$MADE_DIR"
run curl -fsSL --retry 3 -o "$work/$asset" "$SPIN_RELEASES/$SPIN_VERSION/$asset"
run curl -fsSL --retry 3 -o "$work/$sums" "$SPIN_RELEASES/$SPIN_VERSION/$sums"
if ((!DRY_RUN)); then
  grep -E "[[:space:]]\*?${asset//./\\.}\$" "$work/$sums" >"$work/expected" ||
    die "$sums does not list $asset"
  (cd "$work" && sha256sum --check --strict expected) || die "checksum mismatch for $asset"
  if [[ -n "${SPIN_SHA256:-}" ]]; then
    [[ "$(sha256sum "$work/$asset" | cut -d' ' -f1)" == "$SPIN_SHA256" ]] ||
      die "$asset does not match SPIN_SHA256"
  fi
fi
run mkdir -p "$DEST"
run tar -xzf "$work/$asset" -C "$work" spin
run install -m 0755 "$work/spin" "$DEST/spin"
run "$DEST/spin" --version
if ((KUBE_PLUGIN)); then
  run "$DEST/spin" plugins update
  run "$DEST/spin" plugins install kube --version "$SPIN_KUBE_PLUGIN_VERSION" --yes
fi
case ":$PATH:" in
  *":$DEST:"*) ;;
  *) warn "$DEST is not on PATH" ;;
esac
