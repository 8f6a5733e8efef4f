#!/usr/bin/env bash
# Installs the system packages FerroLB's tests use, when they are missing. Run as root on a
# Debian machine; elsewhere it says what is missing and carries on, so unprivileged unit
# tests still run.
set -euo pipefail
# command -> Debian package. The network tests (speaker, lab, datapath) use these as the real
# peers and clients.
declare -A need=(
  [ip]=iproute2
  [sysctl]=procps
  [ping]=iputils-ping
  [arping]=arping
  [ndisc6]=ndisc6
  [nft]=nftables
  [/usr/lib/frr/bgpd]=frr
  [vtysh]=frr
  [curl]=curl
  [ethtool]=ethtool
  [iptables]=iptables
  [iptables-legacy]=iptables
  [clang]=clang
  [llc]=llvm
  [/usr/include/bpf/bpf_helpers.h]=libbpf-dev
  [bpftool]=bpftool
  # make cluster-test: a real node's runtime (containerd is built: hack/envtest.sh) and
  # its certificates.
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [openssl]=openssl
  [nsenter]=util-linux
  # The status page's browser test (internal/controller) drives headless Chromium.
  [chromium]=chromium
)
missing=()
for cmd in "${!need[@]}"; do
  if [[ $cmd == /* ]]; then [ -e "$cmd" ] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  missing+=("${need[$cmd]}")
done
# One package may provide several commands.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "deps: missing ${missing[*]}: install them (as root: bash hack/deps.sh)" >&2
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
