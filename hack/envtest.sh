#!/usr/bin/env bash
# Builds kube-apiserver and etcd (and kubectl, kube-proxy and a real node's components on
# request, below) from the Go module proxy for controller-runtime's envtest, and caches them
# outside the clone so a fresh clone (and CI) reuses them. Cold: about 4 minutes on 2 cores;
# afterwards a version check only. Runs at the same time are safe: one builds while the
# others wait on a lock, then find the binaries built.
#
#   export KUBEBUILDER_ASSETS="$(bash hack/envtest.sh)"   # progress goes to stderr
#
# The cache directory is ${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}/envtest.
set -euo pipefail
K8S=${K8S_VERSION:-1.37.2} ETCD=${ETCD_VERSION:-3.7.3} CONTAINERD=${CONTAINERD_VERSION:-2.3.7} HELM=${HELM_VERSION:-4.3.2}
CACHE=${FERROLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}
DIR=${1:-$CACHE/envtest}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
OUT=$DIR/bin/k8s-$K8S-etcd-$ETCD; mkdir -p "$OUT"
# One run at a time builds: two runs shared the source modules below (each removes and
# rewrites them) and the binaries' temporary names.
exec 9>"$DIR/.lock"
flock -n 9 || { echo "[envtest] waiting for another run (lock $DIR/.lock)" >&2; flock 9; }
# The tool modules below are throwaway modules of their own: keep them out of any go.work and
# let them write their go.mod.
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
log() { echo "[envtest] $*" >&2; }
# ver NAME WANT ARGS...: NAME is built and its ARGS output names WANT. (Not piped into
# grep -q: grep exits at the first match, the binary then dies of SIGPIPE, and pipefail
# made the check fail now and then, rebuilding etcd for nothing.)
ver() { local out; [ -x "$OUT/$1" ] && out=$("$OUT/$1" "${@:3}" 2>/dev/null) && grep -qF "$2" <<<"$out"; }
toolmod() { rm -rf "$1"; mkdir -p "$1"; printf 'module envtest.local/tools\n\ngo 1.24\n' >"$1/go.mod"; }
gobuild() { # MODDIR PKG NAME LDFLAGS
  local s=$SECONDS tmp; log "building $3 (cold: minutes)"
  # A temporary name of this run's own, renamed into place only when complete, so that
  # nobody ever runs a half-written binary.
  tmp=$(mktemp "$OUT/.$3.XXXXXX")
  (cd "$1" && go build -trimpath -ldflags "$4" -o "$tmp" "$2") || { rm -f "$tmp"; return 1; }
  chmod 755 "$tmp"; mv -f "$tmp" "$OUT/$3"; log "built $3 in $((SECONDS - s))s"; }

# kube-apiserver always; kubectl with WITH_KUBECTL=1, kube-proxy with WITH_KUBE_PROXY=1 (the
# lab's Service datapath), and with WITH_NODE=1 what a real node adds to them (make
# cluster-test): kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl,
# and containerd (below). WITH_HELM=1 adds helm. Only the missing ones are built.
if [ "${WITH_NODE:-0}" = 1 ]; then WITH_KUBECTL=1 WITH_KUBE_PROXY=1; fi
need=()
ver kube-apiserver "v$K8S" --version || need+=(kube-apiserver)
[ "${WITH_KUBECTL:-0}" = 1 ] && ! ver kubectl "v$K8S" version --client && need+=(kubectl)
[ "${WITH_KUBE_PROXY:-0}" = 1 ] && ! ver kube-proxy "v$K8S" --version && need+=(kube-proxy)
if [ "${WITH_NODE:-0}" = 1 ]; then
  for t in kube-controller-manager kube-scheduler kubelet; do
    ver "$t" "v$K8S" --version || need+=("$t")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  M=$DIR/src/kubernetes-$K8S; toolmod "$M"; s=$SECONDS
  # k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with ./staging paths, so
  # `go install` refuses it: point each one at its published v0.MINOR.PATCH instead.
  gomod=$(cd "$M" && go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  IFS=. read -r MAJ MIN PAT <<<"$K8S"
  { printf 'module envtest.local/tools\n\ngo %s\n\nreplace (\n' "$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0( // indirect)?$' "$gomod" | awk -v v="v0.$MIN.$PAT" '{print "\t" $1 " => " $1 " " v}'
    echo ')'; } >"$M/go.mod"
  for t in "${need[@]}"; do
    (cd "$M" && go get -tool "k8s.io/kubernetes/cmd/$t@v$K8S") >>"$M/get.log" 2>&1 || { cat "$M/get.log" >&2; exit 1; }
  done
  log "kubernetes modules ready in $((SECONDS - s))s"
  X="-s -w"; for p in component-base/version client-go/pkg/version; do
    X="$X -X k8s.io/$p.gitVersion=v$K8S -X k8s.io/$p.gitMajor=$MAJ -X k8s.io/$p.gitMinor=$MIN"; done
  for t in "${need[@]}"; do gobuild "$M" "k8s.io/kubernetes/cmd/$t" "$t" "$X"; done
fi
if ! ver etcd "etcd Version: $ETCD" --version; then
  M=$DIR/src/etcd-$ETCD; toolmod "$M"
  # go.etcd.io/etcd/server/v3 is itself package main; its replace lines also block `go install`.
  (cd "$M" && go get -tool "go.etcd.io/etcd/server/v3@v$ETCD") >"$M/get.log" 2>&1 || { cat "$M/get.log" >&2; exit 1; }
  gobuild "$M" go.etcd.io/etcd/server/v3 etcd "-s -w"
fi
# A real node's container runtime (WITH_NODE=1): containerd 2, because kubelets from 1.36 no
# longer support containerd 1.x (Debian 12 ships 1.6), with its runc shim and ctr. runc itself
# and the CNI plugins are Debian's (hack/deps.sh).
if [ "${WITH_NODE:-0}" = 1 ] && ! { ver containerd "$CONTAINERD" --version && ver ctr "$CONTAINERD" --version; }; then
  M=$DIR/src/containerd-$CONTAINERD; toolmod "$M"
  for t in containerd containerd-shim-runc-v2 ctr; do
    (cd "$M" && go get -tool "github.com/containerd/containerd/v2/cmd/$t@v$CONTAINERD") >>"$M/get.log" 2>&1 || { cat "$M/get.log" >&2; exit 1; }
  done
  X="-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD"
  for t in containerd containerd-shim-runc-v2 ctr; do gobuild "$M" "github.com/containerd/containerd/v2/cmd/$t" "$t" "$X"; done
fi
# Helm (WITH_HELM=1), for the chart's lint and template checks and make cluster-test.
if [ "${WITH_HELM:-0}" = 1 ] && ! ver helm "v$HELM" version --short; then
  M=$DIR/src/helm-$HELM; toolmod "$M"
  (cd "$M" && go get -tool "helm.sh/helm/v4/cmd/helm@v$HELM") >"$M/get.log" 2>&1 || { cat "$M/get.log" >&2; exit 1; }
  gobuild "$M" helm.sh/helm/v4/cmd/helm helm "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM"
fi
log "$("$OUT/kube-apiserver" --version); $("$OUT/etcd" --version | head -1)"
echo "$OUT"
