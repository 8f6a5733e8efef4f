#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for make cluster-test (as root):
#
#   bash hack/cluster.sh up             # start it (a second up is refused: run down first)
#   bash hack/cluster.sh load IMAGE.tar # import an OCI/Docker image tar into the node's containerd
#   bash hack/cluster.sh exec CMD...    # run a command in the node's network namespace
#   bash hack/cluster.sh down           # stop everything and remove all its state
#
# The node is a network namespace, flb-cl-node, so that nothing it does (routes, nftables,
# the pods' bridge) touches the host's network. Its "LAN" is a veth, eth0 (192.168.77.10/24),
# whose other end is eth0 of a client namespace, flb-cl-client (192.168.77.100). Running in it
# (each process through nsenter --net, so the mounts and cgroups stay the host's):
#   etcd, kube-apiserver (advertised at 192.168.77.10:6443), kube-controller-manager,
#   kube-scheduler: the control plane, built by hack/envtest.sh WITH_NODE=1 at v1.37.2;
#   containerd 2.x (built there too: kubelets from 1.36 need containerd 2) with runc and the
#   CNI plugins from Debian (bridge cni0, 10.244.0.0/24), pod sandboxes from a pause image
#   built here (test/cluster/pause);
#   kubelet (cgroupfs driver; this kernel's cgroups are v1, so failCgroupV1: false) and
#   kube-proxy (nftables).
# Everything lives under $FERROLB_CLUSTER_DIR (default /var/lib/ferrolb-cluster); down
# removes processes, mounts, cgroups, namespaces and that directory, and is safe to repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${FERROLB_CLUSTER_DIR:-/var/lib/ferrolb-cluster}
NODE=flb-cl-node CLIENT=flb-cl-client
NODE_IP=192.168.77.10 CLIENT_IP=192.168.77.100 POD_CIDR=10.244.0.0/24 SVC_CIDR=10.96.0.0/24
PAUSE=localhost/ferrolb-pause:v1
log() { echo "[cluster $(date +%T)] $*" >&2; }
die() { log "$*"; exit 1; }
innode() { nsenter --net=/run/netns/$NODE "$@"; }

# start NAME CMD...: a process in the node's network namespace, in its own session, logging
# to $DIR/log/NAME.log; its pid goes to $DIR/pid/NAME.
start() {
  local name=$1; shift
  nsenter --net=/run/netns/$NODE setsid "$@" >"$DIR/log/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pid/$name"
}

# wait_for WHAT SECONDS CMD...: until CMD succeeds, or fail with the logs' last lines.
wait_for() {
  local what=$1 secs=$2 s=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - s > secs)); then
      log "timed out after ${secs}s waiting for $what"; tail -n 15 "$DIR"/log/*.log >&2 || true; return 1
    fi
    for f in "$DIR"/pid/*; do
      [ -e "$f" ] && ! kill -0 "$(cat "$f")" 2>/dev/null && { log "$(basename "$f") exited"; tail -n 30 "$DIR/log/$(basename "$f").log" >&2; return 1; }
    done
    sleep 1
  done
  log "$what after $((SECONDS - s))s"
}

facts() {
  # What this kernel offers a kubelet, checked before anything starts (docs/cluster-test.md).
  [ "$(id -u)" = 0 ] || die "run as root"
  local fs; fs=$(stat -fc %T /sys/fs/cgroup)
  if [ "$fs" = cgroup2fs ]; then CGROUP=v2; else
    CGROUP=v1
    for c in cpu cpuacct cpuset memory pids; do
      [ -d /sys/fs/cgroup/$c ] || die "cgroup v1 controller $c is not mounted at /sys/fs/cgroup/$c"
    done
  fi
  grep -qw overlay /proc/filesystems || die "no overlayfs in /proc/filesystems: containerd's overlayfs snapshotter cannot work"
  command -v runc >/dev/null || die "runc is missing (hack/deps.sh installs it)"
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins are missing (hack/deps.sh installs containernetworking-plugins)"
  log "cgroups $CGROUP ($fs at /sys/fs/cgroup$( [ -d /sys/fs/cgroup/unified ] && echo ", cgroup2 at /sys/fs/cgroup/unified")); overlayfs; $(runc --version | head -1)"
}

certs() {
  local c=$DIR/pki; mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferrolb-cluster-ca \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$c/apiserver.key" \
    -out "$c/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
    "$NODE_IP" >"$c/san.ext"
  openssl x509 -req -in "$c/apiserver.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -days 2 -extfile "$c/san.ext" -out "$c/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
  # Static tokens (random per run): each component its own user, the kubelet a Node identity.
  : >"$c/tokens.csv"
  local name user group tok
  while read -r name user group; do
    tok=$(openssl rand -hex 16)
    echo "$tok,$user,$user${group:+,$group}" >>"$c/tokens.csv"
    cat >"$DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://$NODE_IP:6443", certificate-authority: $c/ca.crt}}]
users: [{name: u, user: {token: $tok}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF
  done <<EOF
admin admin system:masters
kcm system:kube-controller-manager
scheduler system:kube-scheduler
proxy system:kube-proxy
kubelet system:node:$NODE system:nodes
EOF
}

network() {
  ip netns add $NODE; ip netns add $CLIENT
  ip link add eth0 netns $NODE type veth peer name eth0 netns $CLIENT
  ip -n $NODE link set lo up; ip -n $CLIENT link set lo up
  ip -n $NODE addr add $NODE_IP/24 dev eth0; ip -n $NODE link set eth0 up
  ip -n $CLIENT addr add $CLIENT_IP/24 dev eth0; ip -n $CLIENT link set eth0 up
  # A default route (nothing answers at .1): components that look for the node's address
  # by it find eth0.
  ip -n $NODE route add default via 192.168.77.1 dev eth0
  innode sysctl -qw net.ipv4.ip_forward=1
}

configs() {
  mkdir -p "$DIR"/{cni/net.d,cni/ipam,containerd,kubelet,pod-logs}
  cat >"$DIR/cni/net.d/10-flb.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "flb-cluster", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$DIR/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
  cat >"$DIR/containerd/config.toml" <<EOF
version = 3
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$DIR/containerd/containerd.sock"
[ttrpc]
  address = "$DIR/containerd/containerd.sock.ttrpc"
[plugins]
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = "$DIR/containerd/opt"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE'
  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    # Root here lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj (runc
    # failed every sandbox: "failed to update /proc/self/oom_score_adj: Permission denied").
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$(command -v runc)'
          Root = '$DIR/containerd/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$DIR/cni/net.d'
      use_internal_loopback = true
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
EOF
  cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This kernel mounts cgroup v1 controllers (cgroup2 only at /sys/fs/cgroup/unified); kubelets
# from 1.35 refuse to start on cgroup v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$DIR/containerd/containerd.sock
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
# The API server reaches the kubelet (logs, exec) only inside the node's namespace.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
podLogsDir: $DIR/pod-logs
clusterDomain: cluster.local
failSwapOn: false
# A shared build machine: never evict or collect images for disk or memory.
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

up() {
  [ -e "$DIR" ] && die "$DIR exists: a cluster is up (or was not taken down): bash hack/cluster.sh down"
  facts
  local s=$SECONDS bin
  bin=${FERROLB_CLUSTER_BIN:-$(WITH_NODE=1 bash hack/envtest.sh)}
  mkdir -p "$DIR"/{log,pid}; echo "$bin" >"$DIR/bin"
  export PATH=$bin:$PATH
  network; certs; configs
  local c=$DIR/pki
  start etcd etcd --data-dir="$DIR/etcd" --listen-client-urls=http://127.0.0.1:2379 \
    --advertise-client-urls=http://127.0.0.1:2379 --listen-peer-urls=http://127.0.0.1:2380 --unsafe-no-fsync
  start kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address=$NODE_IP --bind-address=0.0.0.0 --secure-port=6443 \
    --tls-cert-file="$c/apiserver.crt" --tls-private-key-file="$c/apiserver.key" \
    --client-ca-file="$c/ca.crt" --token-auth-file="$c/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$c/sa.pub" \
    --service-account-signing-key-file="$c/sa.key" --service-cluster-ip-range=$SVC_CIDR \
    --authorization-mode=Node,RBAC --allow-privileged=true --kubelet-preferred-address-types=InternalIP
  wait_for "API server ready" 90 innode kubectl --kubeconfig="$DIR/admin.kubeconfig" get --raw /readyz
  start kube-controller-manager kube-controller-manager --kubeconfig="$DIR/kcm.kubeconfig" \
    --authentication-kubeconfig="$DIR/kcm.kubeconfig" --authorization-kubeconfig="$DIR/kcm.kubeconfig" \
    --service-account-private-key-file="$c/sa.key" --root-ca-file="$c/ca.crt" \
    --use-service-account-credentials --service-cluster-ip-range=$SVC_CIDR \
    --leader-elect=false --bind-address=127.0.0.1
  start kube-scheduler kube-scheduler --kubeconfig="$DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/scheduler.kubeconfig" --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1
  start containerd containerd --config "$DIR/containerd/config.toml"
  wait_for "containerd" 60 ctr --address "$DIR/containerd/containerd.sock" version
  image "$PAUSE" test/cluster/pause
  load "$DIR/images/pause.tar"
  start kubelet kubelet --config="$DIR/kubelet/config.yaml" --kubeconfig="$DIR/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet/root" --hostname-override=$NODE --node-ip=$NODE_IP
  start kube-proxy kube-proxy --kubeconfig="$DIR/proxy.kubeconfig" --proxy-mode=nftables \
    --hostname-override=$NODE --cluster-cidr=10.244.0.0/16 --conntrack-max-per-core=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
  wait_for "node $NODE Ready" 120 innode kubectl --kubeconfig="$DIR/admin.kubeconfig" wait --for=condition=Ready node/$NODE --timeout=2s
  log "up in $((SECONDS - s))s: KUBECONFIG=$DIR/admin.kubeconfig, run kubectl in the node: bash hack/cluster.sh exec kubectl get pods -A"
}

# image NAME PKG: a static Go program as an image (hack/image), in $DIR/images.
image() {
  mkdir -p "$DIR/images"; local n; n=$(basename "$2")
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$DIR/images/$n" "./$2"
  go run ./hack/image -binary "$DIR/images/$n" -name "$1" -o "$DIR/images/$n.tar" >/dev/null
}

load() {
  local bin; bin=$(cat "$DIR/bin")
  "$bin/ctr" --address "$DIR/containerd/containerd.sock" -n k8s.io images import "$1" >&2
}

# kill_pidfile NAME: stop a process started by start, then kill it if it lingers.
kill_pidfile() {
  local f=$DIR/pid/$1 pid
  [ -e "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

down() {
  [ -e "$DIR" ] || { ip netns del $NODE 2>/dev/null || true; ip netns del $CLIENT 2>/dev/null || true; return 0; }
  log "taking the cluster down"
  # The shims' sockets, which containerd keeps in /run/containerd/s whatever its
  # configuration, named by the hash of its address, the namespace and the task (pkg/shim
  # SocketAddress): listed from the task directories now, before containerd removes them.
  local id h sockets=()
  for id in $(ls "$DIR/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null); do
    for h in "$DIR/containerd/containerd.sock/k8s.io/$id" "$DIR/containerd/containerd.sock/k8s.io/$id/debug"; do
      sockets+=("/run/containerd/s/$(printf %s "$h" | sha256sum | cut -d' ' -f1)")
    done
  done
  kill_pidfile kubelet; kill_pidfile kube-proxy
  # Containers: every process in the kubelet's cgroups (cgroupfs driver: /kubepods).
  local pids p
  for _ in 1 2 3; do
    pids=$(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs $(find /sys/fs/cgroup/pids/kubepods -mindepth 1 -name cgroup.procs 2>/dev/null) 2>/dev/null | sort -u || true)
    [ -z "$pids" ] && break
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.5
  done
  # The containerd shims of this cluster (they name its socket), then containerd.
  for p in $(pgrep -f containerd-shim-runc-v2 || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$DIR/containerd/containerd.sock" && kill -9 "$p" 2>/dev/null || true
  done
  rm -f "${sockets[@]}"
  for n in containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do kill_pidfile "$n"; done
  # cgroups the kubelet made, deepest first.
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Mounts under the state directory (rootfs overlays, pod volumes, network namespaces), deepest first.
  local m
  for _ in 1 2 3; do
    m=$(awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ -z "$m" ] && break
    for p in $m; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
  done
  ip netns del $NODE 2>/dev/null || true; ip netns del $CLIENT 2>/dev/null || true
  find /var/log/containers -maxdepth 1 -type l -lname "$DIR/*" -delete 2>/dev/null || true
  # What the kubelet, containerd and libcni keep in fixed places: CNI results of this
  # network, and the directories, when nobody else uses them.
  rm -f /var/lib/cni/results/flb-cluster-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni /run/containerd/s /run/containerd /var/log/containers 2>/dev/null || true
  rm -rf "$DIR"
  log "down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  load) shift; for f in "$@"; do load "$f"; done ;;
  image) shift; image "$@" ;;
  exec) shift; export KUBECONFIG=$DIR/admin.kubeconfig PATH=$(cat "$DIR/bin"):$PATH; innode "$@" ;;
  facts) facts ;;
  *) echo "usage: $0 up|down|load IMAGE.tar...|exec CMD...|facts" >&2; exit 2 ;;
esac
