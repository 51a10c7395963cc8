# shellcheck shell=bash disable=SC2034
# Shared settings of the real node scripts (sourced by up.sh and down.sh).
#
# Heavy state (containerd's content and snapshots, kubelet's pod dirs, pod logs, certificates) is
# machine state under $NODE_ROOT; sockets and pids under $NODE_RUN; the few facts tests need
# (node name, image refs) under the repo's .zdtp/node. down.sh removes all three.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${ZDTP_STATE:-$repo/.zdtp}
cluster_name=${ZDTP_CLUSTER_NAME:-zdtp}
kubeconfig="$state/kubeconfig"
cluster_pki="$state/kwok/clusters/$cluster_name/pki"
node_state="$state/node"
NODE_ROOT=${ZDTP_NODE_ROOT:-/var/lib/zdtp-node}
NODE_RUN=${ZDTP_NODE_RUN:-/run/zdtp-node}
node_name=${ZDTP_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
kubelet_port=${ZDTP_NODE_KUBELET_PORT:-10250}
kubelet_healthz_port=${ZDTP_NODE_KUBELET_HEALTHZ_PORT:-10248}
# A cgroup of our own in every v1 hierarchy (and in the v2 one): kubelet puts kubepods below it,
# so down.sh can remove exactly what the node made.
cgroup_parent=zdtp-node
bridge=zdtp0
# No default route and no gateway: pods that are not hostNetwork reach only each other.
pod_subnet=${ZDTP_NODE_POD_SUBNET:-10.77.0.0/24}
sock="$NODE_RUN/containerd.sock"

# shellcheck source=../cluster/versions.env
source "$repo/dev/cluster/versions.env"
k8s_bin="${ZDTP_CACHE:-$HOME/.cache/zdtp}/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}/bin"

# One node per machine: up.sh and down.sh hold this lock, so two test sessions starting the node
# at once do not both start a containerd. A nested call (up.sh -> down.sh) already holds it.
node_lock() {
  [ "${ZDTP_NODE_LOCKED:-}" = 1 ] && return 0
  mkdir -p "$(dirname "$NODE_RUN")"
  exec 9>"$NODE_RUN.lock"
  flock -w 900 9 || { echo "zdtp node: another node start/stop held $NODE_RUN.lock for 15 min" >&2; exit 1; }
  export ZDTP_NODE_LOCKED=1
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Every cgroup hierarchy root that is mounted (v1 controllers, name=systemd, the v2 unified one).
cgroup_roots() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }
