#!/usr/bin/env bash
# Builds the dev-cluster binaries from the Go module proxy into a versioned cache folder and
# prints that folder. A folder that already holds every binary is reused as it is.
#
# Why wrapper modules: k8s.io/kubernetes and etcd's server module use `replace` lines that
# `go install pkg@version` ignores, so each is built from a throwaway module that requires it
# and repeats those replaces with published versions.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

fail() { echo "zdtp cluster build: $*" >&2; exit 1; }

cache_root=${ZDTP_CACHE:-$HOME/.cache/zdtp}
dest="$cache_root/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
bin="$dest/bin"
# kubelet serves the optional real node (dev/node/up.sh); it comes from the same wrapper module.
wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd kwok kwokctl)

stages="$dest/kwok-default-stages"
have_all() {
  for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ -s "$stages/pod-ready.yaml" ]
}
if have_all; then echo "$bin"; exit 0; fi

command -v go >/dev/null 2>&1 || fail "Go toolchain not found on PATH (need Go >= 1.25 to build Kubernetes ${K8S_VERSION} into $dest)"
mkdir -p "$bin"
work="$dest/src"
mkdir -p "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
log() { echo "zdtp cluster build: $*" >&2; }

# build_kubernetes [cmd...]: builds the named k8s.io/kubernetes/cmd/* binaries (default: all five).
build_kubernetes() {
  local mod="$work/kubernetes" minor gomod cmds=("$@")
  [ ${#cmds[@]} -gt 0 ] || cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
  mkdir -p "$mod"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local staging_version="v0.${K8S_VERSION#v1.}"
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || fail "could not download k8s.io/kubernetes@${K8S_VERSION} from the Go module proxy"
  {
    echo "module zdtp.local/k8sbins"
    echo "go 1.25.0"
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo "replace ("
    # Every staging module the served go.mod maps to ./staging, at its published version.
    grep -E '^\s*k8s.io/[^ ]+ => ./staging/' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$mod/go.mod"
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version ld=""
  for p in $pkg $cpkg; do
    ld+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor} -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building Kubernetes ${K8S_VERSION}: ${cmds[*]} (cold: ~15-25 min on 2 cores; kubelet alone ~2 min warm)"
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true
   go build -trimpath -pgo=off -ldflags "-s -w$ld" -o "$bin/" "${cmds[@]/#/k8s.io/kubernetes/cmd/}")
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  log "building etcd ${ETCD_VERSION}"
  (cd "$mod" && { [ -f go.mod ] || go mod init zdtp.local/etcdbin >/dev/null 2>&1; } \
     && go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1 \
     && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  log "building kwok ${KWOK_VERSION}"
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
}

# kwok's default stages, kept beside the binaries: dev/cluster/up.sh adds the ones it needs to
# zdtp's own stages (a config that names any Stage gets none of the defaults).
copy_default_stages() {
  local src
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage"
  [ -d "$src" ] || (cd "$work" && go mod download "sigs.k8s.io/kwok@${KWOK_VERSION}" >/dev/null 2>&1 || true)
  [ -d "$src" ] || (mkdir -p "$work/kwokmod" && cd "$work/kwokmod" && { [ -f go.mod ] || go mod init zdtp.local/kwokmod >/dev/null 2>&1; } && go mod download "sigs.k8s.io/kwok@${KWOK_VERSION}")
  mkdir -p "$stages"
  cp "$src/node/fast/node-initialize.yaml" "$src/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$src/pod/fast/pod-ready.yaml" "$src/pod/fast/pod-delete.yaml" "$stages/"
  chmod 644 "$stages"/*.yaml
}

[ -x "$bin/etcd" ] || build_etcd
{ [ -x "$bin/kwok" ] && [ -x "$bin/kwokctl" ]; } || build_kwok
if { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/kube-scheduler" ] && [ -x "$bin/kube-controller-manager" ]; }; then
  # A cache made before kubelet was added: build just kubelet (same module, warm Go cache).
  [ -x "$bin/kubelet" ] || build_kubernetes kubelet
else
  build_kubernetes
fi
[ -s "$stages/pod-ready.yaml" ] || copy_default_stages
have_all || fail "build finished but binaries are missing in $bin"
echo "$bin"
