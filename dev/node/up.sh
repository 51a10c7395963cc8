#!/usr/bin/env bash
# Starts (or reuses) a real Kubernetes node on this machine, joined to the running dev control
# plane (dev/cluster/up.sh): Debian's containerd + runc, kubelet built from the pinned Kubernetes
# module, images built without Docker (images.sh). No kubeadm: the kubelet's client certificate is
# signed here with the dev cluster's CA (kwokctl's PKI).
#
# The node is tainted zdtp.io/real-node=true:NoSchedule and labelled zdtp.io/real-node=true, so
# only pods that ask for it land there. Pods use hostNetwork to reach services on 127.0.0.1; other
# pods get an address on an isolated bridge (no gateway, no NAT, no route off the machine).
#
# Exit codes: 0 ready · 1 failed · 2 this machine cannot run a node (not root, no overlayfs,
# no cgroups, ...): the one-line reason is on stderr, and tests that need the node skip with it.
set -euo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
t0=$(date +%s)

fail() { echo "zdtp node-up: $*" >&2; exit 1; }
unsupported() { echo "zdtp node-up: cannot run a real node here: $*" >&2; exit 2; }
log() { echo "zdtp node-up: $*" >&2; }

# --- can this machine run a node at all? --------------------------------------------------------
[ "$(uname -s)" = Linux ] || unsupported "needs Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || unsupported "needs root (containerd, mounts, cgroups, network namespaces)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || unsupported "the kernel has no overlay filesystem (containerd's overlayfs snapshotter)"
cgroup_roots | grep -q . || unsupported "no cgroup filesystem is mounted under /sys/fs/cgroup"
if ! grep -q ' cgroup2 ' /proc/mounts || [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  for c in cpu memory pids; do
    awk -v c="$c" '$3 == "cgroup" && $4 ~ ("(^|,)" c "(,|$)") {f=1} END {exit !f}' /proc/mounts \
      || unsupported "cgroup v1 controller '$c' is not mounted"
  done
fi
unshare --net true 2>/dev/null || unsupported "cannot create a network namespace ('unshare --net true' failed)"

need_pkgs=()
command -v containerd >/dev/null || need_pkgs+=(containerd)
command -v runc >/dev/null || need_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v umoci >/dev/null || need_pkgs+=(umoci)
command -v mmdebstrap >/dev/null || need_pkgs+=(mmdebstrap)
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || unsupported "missing ${need_pkgs[*]} and no apt-get to install them"
  log "installing ${need_pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; } \
    || fail "apt-get install ${need_pkgs[*]} failed"
fi
# Installed is not enough: containerd finds runc (and the CNI plugins' helpers) on PATH. Without
# this a node comes up Ready and every pod hangs in ContainerCreating.
for cmd in containerd runc umoci mmdebstrap; do
  command -v "$cmd" >/dev/null || fail "$cmd is installed but not on PATH ($PATH)"
done

node_lock

# --- the control plane it joins ----------------------------------------------------------------
"$(dirname "$0")/../cluster/build.sh" >/dev/null || exit 1
kubectl=("$k8s_bin/kubectl" --kubeconfig "$kubeconfig")
"${kubectl[@]}" get --raw /readyz >/dev/null 2>&1 || fail "the dev cluster is not running ($kubeconfig): run make cluster-up first"
[ -s "$cluster_pki/ca.crt" ] && [ -s "$cluster_pki/ca.key" ] || fail "no cluster CA in $cluster_pki"
server=$("${kubectl[@]}" config view --raw -o jsonpath='{.clusters[0].cluster.server}')

node_ready() {
  [ "$("${kubectl[@]}" get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# --- images (cached by content hash) -----------------------------------------------------------
images=$("$here/images.sh") || fail "image build failed"
t_images=$(date +%s)
pause_ref=$(awk '$1 == "pause" {print $2}' <<<"$images")
worker_ref=$(awk '$1 == "worker" {print $2}' <<<"$images")
ctr=(ctr --address "$sock" -n k8s.io)
import_images() {
  local ref tar have
  have=$("${ctr[@]}" images ls -q)
  while read -r _ ref tar; do
    grep -qxF "$ref" <<<"$have" && continue
    log "importing $ref"
    "${ctr[@]}" images import --base-name "${ref%:*}" --snapshotter overlayfs "$tar" >/dev/null
    "${ctr[@]}" images ls -q | grep -qxF "$ref" || fail "import of $tar did not yield $ref"
  done <<<"$images"
}
write_facts() {
  mkdir -p "$node_state"
  echo "$node_name" > "$node_state/node-name"
  echo "$worker_ref" > "$node_state/worker-image"
  echo "$pause_ref" > "$node_state/pause-image"
}

# --- reuse a running node of this cluster ------------------------------------------------------
# The node's own scripts are part of its identity: a changed up.sh/lib.sh restarts it.
setup_hash=$(cat "$here/up.sh" "$here/lib.sh" | sha256sum | cut -c1-16)
if alive "$NODE_RUN/containerd.pid" && alive "$NODE_RUN/kubelet.pid" \
   && cmp -s "$cluster_pki/ca.crt" "$NODE_ROOT/pki/ca.crt" \
   && [ "$(cat "$NODE_RUN/setup-hash" 2>/dev/null)" = "$setup_hash" ] && node_ready; then
  import_images
  write_facts
  echo "zdtp node-up: reusing node $node_name ($(( $(date +%s) - t0 ))s); worker image $worker_ref"
  exit 0
fi
# Anything left from an earlier node (crashed processes, mounts, another cluster's certs) goes.
"$here/down.sh" --quiet || true

mkdir -p "$NODE_ROOT"/{pki,kubelet,pod-logs,cni/net.d,cni/ipam,containerd,opt,volume-plugins,logs} "$NODE_RUN" "$node_state"
echo "$setup_hash" > "$NODE_RUN/setup-hash"

# --- containerd --------------------------------------------------------------------------------
cat > "$NODE_ROOT/containerd.toml" <<TOML
version = 2
root = "$NODE_ROOT/containerd"
state = "$NODE_RUN/containerd"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$NODE_RUN/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_ROOT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This VM gives root no CAP_SYS_RESOURCE, so oom_score_adj cannot go below 0: without this the
  # sandbox's -998 makes every runc create fail ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_ROOT/cni/net.d"
    max_conf_num = 1
TOML
cat > "$NODE_ROOT/cni/net.d/10-zdtp.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "zdtp-node",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": false, "ipMasq": false, "hairpinMode": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_subnet"}]], "dataDir": "$NODE_ROOT/cni/ipam"}}
  ]
}
JSON
# 9>&-: the daemons must not inherit the start/stop lock (lib.sh's node_lock).
setsid containerd --config "$NODE_ROOT/containerd.toml" >"$NODE_ROOT/logs/containerd.log" 2>&1 < /dev/null 9>&- &
echo $! > "$NODE_RUN/containerd.pid"
for _ in $(seq 1 100); do
  ctr --address "$sock" version >/dev/null 2>&1 && break
  alive "$NODE_RUN/containerd.pid" || fail "containerd exited: $(tail -n 3 "$NODE_ROOT/logs/containerd.log")"
  sleep 0.1
done
ctr --address "$sock" version >/dev/null 2>&1 || fail "containerd did not answer on $sock"
grep -q 'failed to load plugin io.containerd.grpc.v1.cri' "$NODE_ROOT/logs/containerd.log" \
  && fail "containerd's CRI plugin did not load: $(grep -m1 'io.containerd.grpc.v1.cri' "$NODE_ROOT/logs/containerd.log")"
import_images
t_runtime=$(date +%s)

# --- certificates: client (system:node:<name>) and serving, signed by the cluster CA ---------
pki="$NODE_ROOT/pki"
cp "$cluster_pki/ca.crt" "$pki/ca.crt"
sign() { # sign <name> <subject> <extensions>
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -subj "$2" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' "$3" > "$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$cluster_pki/ca.crt" -CAkey "$cluster_pki/ca.key" \
    -CAcreateserial -CAserial "$pki/ca.srl" -days 30 -sha256 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
  chmod 600 "$pki/$1.key"
}
sign kubelet-client "/O=system:nodes/CN=system:node:$node_name" \
  "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign kubelet-serving "/CN=$node_name" \
  "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$node_name,DNS:localhost,IP:127.0.0.1"
cat > "$pki/kubelet.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: zdtp
  cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}
users:
- name: node
  user: {client-certificate: "$pki/kubelet-client.crt", client-key: "$pki/kubelet-client.key"}
contexts:
- name: node
  context: {cluster: zdtp, user: node}
current-context: node
YAML

# --- cgroups: a parent of our own in every hierarchy -------------------------------------------
while read -r root; do
  mkdir -p "$root/$cgroup_parent"
  # cgroup v1 cpuset children start empty; a cgroup with no CPUs or memory nodes takes no tasks.
  if [ -f "$root/cpuset.cpus" ] && [ -z "$(tr -d '[:space:]' < "$root/$cgroup_parent/cpuset.cpus")" ]; then
    cat "$root/cpuset.cpus" > "$root/$cgroup_parent/cpuset.cpus"
    cat "$root/cpuset.mems" > "$root/$cgroup_parent/cpuset.mems"
  fi
done < <(cgroup_roots)

# --- kubelet -----------------------------------------------------------------------------------
cat > "$NODE_ROOT/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
# The dev apiserver calls kubelets without a client certificate (kwokctl sets none), so logs and
# exec through the API need anonymous access; the kubelet listens on 127.0.0.1 only.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_parent
cgroupsPerQOS: true
# This VM mounts cgroup v1 (hybrid); Kubernetes 1.35 refuses v1 unless told not to.
failCgroupV1: false
failSwapOn: false
memorySwap: {swapBehavior: NoSwap}
podLogsDir: $NODE_ROOT/pod-logs
volumePluginDir: $NODE_ROOT/volume-plugins
makeIPTablesUtilChains: false
registerNode: true
registerWithTaints:
- {key: zdtp.io/real-node, value: "true", effect: NoSchedule}
maxPods: 30
# A shared dev machine: never evict or garbage-collect images because other work fills the disk.
evictionHard: {memory.available: 256Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 10s
shutdownGracePeriod: 0s
YAML

# The running dev cluster may have been started before KWOK got its annotation selector and then
# manages every node. KWOK leaves a node alone while someone else holds its fresh Lease, so hold
# it for the kubelet before the Node appears (the kubelet renews it from then on).
"${kubectl[@]}" apply --server-side --force-conflicts --field-manager=zdtp-node -f - >/dev/null <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: $node_name, namespace: kube-node-lease}
spec:
  holderIdentity: $node_name
  leaseDurationSeconds: 40
  renewTime: "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)"
YAML

kubelet_args=(--config "$NODE_ROOT/kubelet/config.yaml" --kubeconfig "$pki/kubelet.kubeconfig"
  --root-dir "$NODE_ROOT/kubelet" --cert-dir "$pki"
  # No --node-ip: the kubelet rejects a loopback one. The apiserver reaches it by its Hostname
  # address, which resolves to 127.0.0.1 on this machine.
  --node-labels "zdtp.io/real-node=true" --v=1)
[ "$node_name" = "$(hostname)" ] || kubelet_args+=(--hostname-override "$node_name")
setsid "$k8s_bin/kubelet" "${kubelet_args[@]}" >"$NODE_ROOT/logs/kubelet.log" 2>&1 < /dev/null 9>&- &
echo $! > "$NODE_RUN/kubelet.pid"

for _ in $(seq 1 120); do
  node_ready && break
  alive "$NODE_RUN/kubelet.pid" || fail "kubelet exited: $(grep -E '^[EF]' "$NODE_ROOT/logs/kubelet.log" | tail -n 3)"
  sleep 1
done
node_ready || fail "node $node_name not Ready after 120s (logs: $NODE_ROOT/logs/kubelet.log)"
write_facts
t_end=$(date +%s)
echo "zdtp node-up: node $node_name Ready in $((t_end - t0))s (images $((t_images - t0))s," \
  "containerd + import $((t_runtime - t_images))s, kubelet $((t_end - t_runtime))s); worker image $worker_ref; logs $NODE_ROOT/logs"
