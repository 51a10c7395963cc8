#!/usr/bin/env bash
# Stops the real node and removes everything dev/node/up.sh made: kubelet, containers and their
# shims, containerd, mounts (pod volumes, container rootfs), pod network namespaces, the bridge,
# the node's cgroups, CNI cache files, log links, state folders, and the Node + Lease objects.
# Safe to run when nothing is up. --quiet: say nothing when there was nothing to do.
set -uo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
quiet=false
[ "${1:-}" = --quiet ] && quiet=true
say() { $quiet || echo "zdtp node-down: $*" >&2; }
warn() { echo "zdtp node-down: $*" >&2; }

[ -e "$NODE_ROOT" ] || [ -e "$NODE_RUN" ] || [ -e "$node_state" ] || { say "no node here"; exit 0; }
[ "$(id -u)" = 0 ] || { warn "needs root"; exit 1; }
node_lock

stop_pid() { # stop_pid <pidfile> <name>: TERM, then KILL after 10 s
  local f=$1 pid
  alive "$f" || return 0
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  warn "$2 ($pid) ignored SIGTERM; killing"
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

# Ids of every pod sandbox and container this node's containerd made (live or crashed).
cri_dir="$NODE_ROOT/containerd/io.containerd.grpc.v1.cri"
ids=$(ls "$cri_dir/sandboxes" "$cri_dir/containers" 2>/dev/null | grep -E '^[0-9a-f]{64}$' | sort -u)

# 1. kubelet first, so nothing restarts containers while they go.
stop_pid "$NODE_RUN/kubelet.pid" kubelet

# 2. Containers: kill every task, remember the pods' network namespaces, delete the tasks.
ctr=(ctr --address "$NODE_RUN/containerd.sock" -n k8s.io)
netns=()
if alive "$NODE_RUN/containerd.pid"; then
  for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
    ns=$("${ctr[@]}" containers info "$id" 2>/dev/null | grep -o '/var/run/netns/cni-[0-9a-f-]*' | head -n1)
    [ -n "$ns" ] && netns+=("$ns")
  done
  for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1; done
  for _ in $(seq 1 50); do
    "${ctr[@]}" tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
    sleep 0.1
  done
  for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks rm -f "$id" >/dev/null 2>&1; done
  stop_pid "$NODE_RUN/containerd.pid" containerd
fi
# Shims whose containerd is gone (a crash, or a machine that ended our processes) exit on their
# own once their tasks are gone; any left that talk to our socket are ended by pid.
for p in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *containerd-shim*"$NODE_RUN/containerd.sock"*) kill -KILL "${p#/proc/}" 2>/dev/null ;;
  esac
done
# Pods' netns files that a crash left behind are named in containerd's metadata store too.
if [ -d "$NODE_ROOT/containerd/io.containerd.metadata.v1.bolt" ]; then
  while read -r ns; do netns+=("$ns"); done < <(grep -rhoa '/var/run/netns/cni-[0-9a-f-]*' \
    "$NODE_ROOT/containerd/io.containerd.metadata.v1.bolt" 2>/dev/null | sort -u)
fi

# 3. Mounts under our folders (pod volumes, container rootfs, netns files), deepest first.
mounts_under() { awk -v a="$NODE_ROOT" -v b="$NODE_RUN" 'index($2, a "/") == 1 || index($2, b "/") == 1 || $2 == a || $2 == b {print $2}' /proc/mounts; }
for _ in 1 2 3; do
  mounts_under | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
for ns in $(printf '%s\n' "${netns[@]}" | sort -u); do
  [ -e "$ns" ] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null
  rm -f "$ns"
done

# 4. Network: the bridge (pods' veths went with their namespaces).
ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"

# 5. cgroups below our parent, deepest first.
while read -r root; do
  [ -d "$root/$cgroup_parent" ] || continue
  find "$root/$cgroup_parent" -depth -type d -exec rmdir {} \; 2>/dev/null
  [ -d "$root/$cgroup_parent" ] && warn "could not remove cgroup $root/$cgroup_parent (processes left in it?)"
done < <(cgroup_roots)

# 6. Files the runtime writes outside our folders: runc state of containers whose shim died
#    with them, CNI result cache, kubelet's log links, shim sockets nobody listens on. Only our
#    entries go; folders only if left empty.
for id in $ids; do
  [ -d "/run/containerd/runc/k8s.io/$id" ] && runc --root /run/containerd/runc/k8s.io delete --force "$id" >/dev/null 2>&1
  rm -rf "/run/containerd/runc/k8s.io/$id"
  rm -f /var/lib/cni/results/*"-$id-"* 2>/dev/null
done
rm -f /var/lib/cni/results/zdtp-node-* 2>/dev/null
listening=$(ss -xl 2>/dev/null)
for sk in /run/containerd/s/*; do
  [ -S "$sk" ] && ! grep -qF "$sk" <<<"$listening" && rm -f "$sk"
done
for l in /var/log/containers/*.log; do
  [ -L "$l" ] && case "$(readlink "$l")" in "$NODE_ROOT"/*) rm -f "$l" ;; esac
done
rmdir /var/lib/cni/results /var/lib/cni /var/log/containers /run/netns 2>/dev/null
rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/fifo /run/containerd/s /run/containerd 2>/dev/null

# 7. State folders — never while something is still mounted below them.
if [ -n "$(mounts_under)" ]; then
  warn "mounts remain under $NODE_ROOT or $NODE_RUN; not deleting them:"; mounts_under >&2
  exit 1
fi
rm -rf "$NODE_ROOT" "$NODE_RUN" "$node_state"

# 8. The Node and its Lease, if the control plane is still there.
if [ -x "$k8s_bin/kubectl" ] && [ -f "$kubeconfig" ]; then
  kubectl=("$k8s_bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=10s)
  "${kubectl[@]}" delete node "$node_name" --ignore-not-found --wait=false >/dev/null 2>&1
  "${kubectl[@]}" -n kube-node-lease delete lease "$node_name" --ignore-not-found >/dev/null 2>&1
fi
say "removed node $node_name"
