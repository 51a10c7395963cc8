#!/usr/bin/env bash
# Starts (or reuses) the KWOK dev cluster: real etcd, kube-apiserver, controller-manager and
# scheduler built from upstream modules; nodes and pod lifecycles simulated by kwok.
# Writes the kubeconfig to $ZDTP_STATE/kubeconfig (default .zdtp/kubeconfig). Bound to 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${ZDTP_STATE:-$repo/.zdtp}
name=${ZDTP_CLUSTER_NAME:-zdtp}
port=${ZDTP_APISERVER_PORT:-36443}
nodes=${ZDTP_NODES:-10}
kubeconfig="$state/kubeconfig"

fail() { echo "zdtp cluster-up: $*" >&2; exit 1; }
# build.sh prints its own one-line cause (e.g. no Go toolchain) when it fails.
bin=$("$here/build.sh") || exit 1
export PATH="$bin:$PATH" KWOK_WORKDIR="$state/kwok" KWOK_KUBECTL_BINARY="$bin/kubectl"
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")

healthy() { [ -f "$kubeconfig" ] && "${kubectl[@]}" get --raw /readyz >/dev/null 2>&1; }

if healthy; then
  echo "zdtp cluster-up: reusing running cluster ($kubeconfig)"
else
  # A stopped or half-made cluster of ours: remove it and start clean.
  "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    [ -n "${ZDTP_APISERVER_PORT:-}" ] &&
      fail "port 127.0.0.1:$port is in use by another process (set ZDTP_APISERVER_PORT to a free port)"
    # The default port is taken (e.g. by a cluster an earlier checkout left running): everything
    # reads the port from the kubeconfig, so any free one will do.
    taken=$port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "zdtp cluster-up: 127.0.0.1:$taken is in use by another process; using $port"
  fi
  mkdir -p "$state"
  logs_file="$state/simulated-container.log"
  printf '%s stdout F %s\n' "1970-01-01T00:00:00.000000000Z" \
    "zdtp dev cluster: pods are simulated by KWOK and run no code; this line stands in for the container log." \
    > "$logs_file"
  config="$state/kwokctl.yaml"
  {
    cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeApiserverPort: $port
  kubeAuthorization: true
  kubeAdmission: true
  disableQPSLimits: true
  etcdBinary: $bin/etcd
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kwokControllerBinary: $bin/kwok
  kubectlBinary: $bin/kubectl
# kwokctl's binary runtime starts kwok with --manage-all-nodes=true; a real kubelet node
# (dev/node/up.sh) must stay out of its hands, so kwok manages only the fake nodes below.
componentsPatches:
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
YAML
    for f in "$(dirname "$bin")"/kwok-default-stages/*.yaml "$here"/stages/zdtp-pod-fates.yaml; do
      echo "---"; cat "$f"
    done
    echo "---"; sed "s#__LOGS_FILE__#$logs_file#" "$here/stages/logs.yaml"
  } > "$config"
  echo "zdtp cluster-up: starting control plane on https://127.0.0.1:$port"
  if ! out=$("$bin/kwokctl" create cluster --name "$name" --config "$config" \
        --kubeconfig "$kubeconfig" --wait 180s 2>&1); then
    echo "$out" | tail -n 20 >&2
    fail "kwokctl could not start the cluster (logs: $KWOK_WORKDIR/clusters/$name/logs)"
  fi
fi

# Fake nodes (idempotent). Capacity is generous; pods request little.
for i in $(seq 0 $((nodes - 1))); do
  cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "128", ephemeral-storage: 1Ti}
  capacity: {cpu: "64", memory: 256Gi, pods: "128", ephemeral-storage: 1Ti}
  nodeInfo:
    kubeletVersion: fake
    operatingSystem: linux
    architecture: amd64
YAML
done | "${kubectl[@]}" apply --server-side --field-manager=zdtp-dev -f - >/dev/null

"${kubectl[@]}" wait --for=condition=Ready node --selector=type=kwok --timeout=120s >/dev/null \
  || fail "fake nodes did not become Ready"
for _ in $(seq 1 60); do
  "${kubectl[@]}" get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 1
done
"${kubectl[@]}" get serviceaccount default -n default >/dev/null 2>&1 || fail "default ServiceAccount never appeared"
echo "zdtp cluster-up: ready ($("${kubectl[@]}" get nodes --no-headers | wc -l) nodes); export KUBECONFIG=$kubeconfig"
