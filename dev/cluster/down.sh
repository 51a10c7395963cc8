#!/usr/bin/env bash
# Stops the KWOK dev cluster and removes its state (etcd data, certificates, logs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${ZDTP_STATE:-$repo/.zdtp}
name=${ZDTP_CLUSTER_NAME:-zdtp}
source "$here/versions.env"
bin="${ZDTP_CACHE:-$HOME/.cache/zdtp}/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}/bin"
if [ -x "$bin/kwokctl" ]; then
  KWOK_WORKDIR="$state/kwok" PATH="$bin:$PATH" "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
fi
rm -rf "$state/kwok" "$state/kubeconfig" "$state/kwokctl.yaml"
echo "zdtp cluster-down: removed cluster '$name'"
