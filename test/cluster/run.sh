#!/usr/bin/env bash
# make cluster-test: FerroLB installed by its Helm chart on a real single-node Kubernetes
# (hack/cluster.sh), as an operator would, and checked from a client on the node's LAN.
#   1. make image; the image and a backend image (test/cluster/web) imported into containerd
#   2. helm install: the controller Deployment and speaker DaemonSet Running and Ready (their
#      own probes), the memberlist Secret created, the speaker with exactly NET_RAW
#   3. an IPPool, an L2Policy and a LoadBalancer Service backed by a real pod: the address
#      answers ARP from the node's MAC and an HTTP request reaches the pod
#   4. helm upgrade --set speaker.datapath=xdp,verbose=true: every pod rolls, the speaker has
#      exactly NET_RAW, BPF, PERFMON and NET_ADMIN, the memberlist key and the address stay,
#      ARP and HTTP as before
#   5. helm uninstall: no object of the release is left (the CRDs stay, as Helm does with
#      crds/), and nobody answers ARP for the address
# Everything is taken down at the end, also on failure (KEEP=1 leaves the cluster up).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "cluster-test: SKIP: needs root (network namespaces, containerd, kubelet)"; exit 0; }
start=$SECONDS passed=0 failed=0
CLIENT=flb-cl-client NS=ferrolb-system VIP=192.168.77.200
log() { echo "[cluster-test $(date +%T)] $*" >&2; }
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); log "FAIL: $*"; }
finish() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -e /var/lib/ferrolb-cluster/admin.kubeconfig ]; then
    log "failed: state of the cluster"
    k get pods -A -o wide >&2 || true
    k -n $NS describe pods >&2 2>/dev/null | tail -n 60 || true
    k -n $NS logs -l app.kubernetes.io/name=ferrolb --all-containers --tail=30 >&2 || true
    failed=$((failed + 1))
  fi
  [ "${KEEP:-0}" = 1 ] || bash hack/cluster.sh down || true
  log "took $((SECONDS - start))s"
  echo "cluster-test: $passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$rc" = 0 ]
}
trap finish EXIT

k() { bash hack/cluster.sh exec kubectl "$@"; }
helm() { bash hack/cluster.sh exec "$HELM" "$@"; }
# arp_mac: the MAC that answers ARP for $VIP on the client's LAN, or nothing.
arp_mac() { ip netns exec $CLIENT arping -c 2 -w 3 -I eth0 $VIP 2>/dev/null | grep -i 'from' | grep -oiE '([0-9a-f]{2}:){5}[0-9a-f]{2}' | head -1 | tr 'A-F' 'a-f' || true; }
# caps POD: the speaker container's effective capabilities, from its process on this node.
speaker_caps() {
  local pod id pid
  pod=$(k -n $NS get pods -l app.kubernetes.io/component=speaker -o jsonpath='{.items[0].metadata.name}')
  id=$(k -n $NS get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}'); id=${id#containerd://}
  pid=$("$(cat /var/lib/ferrolb-cluster/bin)/ctr" --address /var/lib/ferrolb-cluster/containerd/containerd.sock -n k8s.io tasks ls | awk -v id="$id" '$1 == id {print $2}')
  [ -n "$pid" ] || { echo "no process for speaker $pod"; return; }
  capsh_names "$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")"
}
# capsh_names HEX: the capability names of a capability mask, sorted.
capsh_names() {
  local m=$((16#$1)) names=() i
  local -A n=([12]=NET_ADMIN [13]=NET_RAW [39]=BPF [21]=SYS_ADMIN [10]=NET_BIND_SERVICE [38]=PERFMON)
  for i in $(seq 0 63); do (( (m >> i) & 1 )) && names+=("${n[$i]:-cap$i}"); done
  printf '%s\n' "${names[@]}" | sort | paste -sd, -
}
rollout() {
  k -n $NS rollout status deployment/ferrolb-controller --timeout=180s >&2 &&
    k -n $NS rollout status daemonset/ferrolb-speaker --timeout=180s >&2
}
ready_pods() { k -n $NS get pods -l "app.kubernetes.io/component=$1" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.containerStatuses[0].ready}{"\n"}{end}'; }

# --- 0. the cluster and the images
export PATH=$PATH:/usr/local/go/bin
bash hack/cluster.sh down >/dev/null 2>&1 || true
HELM=$(WITH_HELM=1 WITH_NODE=1 bash hack/envtest.sh)/helm
bash hack/cluster.sh up
s=$SECONDS
make image >/dev/null
TAG=$(tar -xOf bin/ferrolb-image.tar manifest.json | sed 's/.*"RepoTags":\["[^"]*:\([^"]*\)"\].*/\1/')
bash hack/cluster.sh image localhost/ferrolb-web:v1 test/cluster/web
bash hack/cluster.sh load bin/ferrolb-image.tar /var/lib/ferrolb-cluster/images/web.tar
log "images built and loaded in $((SECONDS - s))s (ferrolb $TAG, $(stat -c %s bin/ferrolb-image.tar) bytes)"

# --- 1. helm install
s=$SECONDS
helm install ferrolb charts/ferrolb --namespace $NS --create-namespace \
  --set image.tag="$TAG" --set image.pullPolicy=Never \
  --set speaker.stateHostPath=/var/lib/ferrolb-cluster/speaker-state --wait --timeout 4m >&2
rollout
log "installed and ready in $((SECONDS - s))s"
c=$(ready_pods controller) sp=$(ready_pods speaker)
echo "$c"; echo "$sp"
[ "$(grep -c ' Running true$' <<<"$c")" = 2 ] && ok "controller: 2 pods Running and Ready" || fail "controller pods: $c"
[ "$(grep -c ' Running true$' <<<"$sp")" = 1 ] && ok "speaker: 1 pod Running and Ready" || fail "speaker pods: $sp"
key1=$(k -n $NS get secret ferrolb-memberlist -o jsonpath='{.data.key}')
[ "$(base64 -d <<<"$key1" | wc -c)" -ge 16 ] && ok "memberlist Secret created with a key" || fail "memberlist Secret: '$key1'"
caps=$(speaker_caps)
[ "$caps" = NET_RAW ] && ok "speaker capabilities (layer 2): $caps" || fail "speaker capabilities: $caps, want NET_RAW"

# --- 2. a Service announced by layer 2, served by a real pod
k apply -f - >&2 <<EOF
apiVersion: ferrolb.io/v1alpha1
kind: IPPool
metadata: {name: lan}
spec:
  blocks: [{start: 192.168.77.200, stop: 192.168.77.210}]
---
apiVersion: ferrolb.io/v1alpha1
kind: L2Policy
metadata: {name: lan}
spec:
  interfaces: ["eth0"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true}
      containers:
        - name: web
          image: localhost/ferrolb-web:v1
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
k -n default rollout status deployment/web --timeout=120s >&2
for _ in $(seq 60); do
  ip=$(k -n default get service web -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$ip" ] && break; sleep 1
done
[ "$ip" = $VIP ] && ok "Service web got $ip from the IPPool" || fail "Service web's address: '$ip', want $VIP"
webpod=$(k -n default get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
nodemac=$(ip -n flb-cl-node -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
check_reach() { # WHEN
  local mac body
  for _ in $(seq 20); do mac=$(arp_mac); [ -n "$mac" ] && break; sleep 1; done
  [ "$mac" = "$nodemac" ] && ok "$1: $VIP answers ARP from the node's MAC $mac" || fail "$1: ARP for $VIP answered by '$mac', the node's MAC is $nodemac"
  body=$(ip netns exec $CLIENT curl -sS -m 5 --retry 5 --retry-all-errors --retry-delay 1 "http://$VIP/" 2>&1 || true)
  [ "$body" = "pod $webpod" ] && ok "$1: HTTP to $VIP reaches $webpod" || fail "$1: HTTP to $VIP answered '$body', want 'pod $webpod'"
}
check_reach "installed"

# --- 3. helm upgrade: the XDP datapath and debug logs (changed values): the pods roll, the
# address stays
uids() { k -n $NS get pods -l app.kubernetes.io/name=ferrolb -o jsonpath='{.items[*].metadata.uid}' | tr ' ' '\n' | sort; }
before=$(uids)
s=$SECONDS
helm upgrade ferrolb charts/ferrolb --namespace $NS --reuse-values --set speaker.datapath=xdp --set verbose=true --wait --timeout 4m >&2
rollout
for _ in $(seq 60); do [ "$(k -n $NS get pods -l app.kubernetes.io/name=ferrolb --no-headers | wc -l)" = 3 ] && break; sleep 1; done
log "upgraded and ready in $((SECONDS - s))s"
after=$(uids)
[ -z "$(comm -12 <(echo "$before") <(echo "$after"))" ] && ok "upgrade rolled every pod" || fail "pods not rolled: $(comm -12 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
[ "$(k -n $NS get secret ferrolb-memberlist -o jsonpath='{.data.key}')" = "$key1" ] && ok "the memberlist key survived the upgrade" || fail "the memberlist key changed on upgrade"
caps=$(speaker_caps)
[ "$caps" = BPF,NET_ADMIN,NET_RAW,PERFMON ] && ok "speaker capabilities (XDP): $caps" || fail "speaker capabilities: $caps, want BPF,NET_ADMIN,NET_RAW,PERFMON"
xdp=""
for _ in $(seq 20); do xdp=$(ip -n flb-cl-node -d link show eth0 | grep -o 'prog/xdp id [0-9]*' || true); [ -n "$xdp" ] && break; sleep 1; done
[ -n "$xdp" ] && ok "the speaker attached its XDP program to the node's eth0 ($xdp)" || fail "no XDP program on the node's eth0"
ip2=$(k -n default get service web -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
[ "$ip2" = "$ip" ] && ok "the address did not move ($ip2)" || fail "the address moved: $ip -> $ip2"
check_reach "upgraded"

# --- 4. helm uninstall: nothing of the release is left
k -n default delete service web --wait >&2
helm uninstall ferrolb --namespace $NS --wait --timeout 3m >&2
for _ in $(seq 60); do [ -z "$(k -n $NS get pods --no-headers 2>/dev/null)" ] && break; sleep 1; done
left=$(k get all,secrets,serviceaccounts,roles,rolebindings,configmaps -n $NS --no-headers -o name 2>/dev/null | grep -v 'configmap/kube-root-ca.crt\|^serviceaccount/default$' || true)
left+=$(k get clusterroles,clusterrolebindings -o name 2>/dev/null | grep ferrolb || true)
[ -z "$left" ] && ok "helm uninstall left nothing of the release behind" || fail "left after uninstall: $left"
# Not the release's, so not removed by it: the CRDs (Helm never deletes crds/), the
# controller's Lease (written at run time), and the test's IPPool and L2Policy.
log "kept after uninstall: $(k get crds -o name | grep -c ferrolb.io) CRDs; $(k -n $NS get leases -o name | tr '\n' ' ')"
mac=$(arp_mac)
[ -z "$mac" ] && ok "nobody answers ARP for $VIP after uninstall" || fail "$VIP still answered by $mac after uninstall"
