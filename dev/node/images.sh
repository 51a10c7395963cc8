#!/usr/bin/env bash
# Builds the real node's two OCI images without Docker and prints, one per line,
#   pause <ref> <oci-archive>
#   worker <ref> <oci-archive>
# Tags are content hashes of everything that goes into an image, and archives are cached under
# $ZDTP_CACHE/node-images, so an unchanged worker is not rebuilt.
#
#   pause:  a static pause binary (pause.c) as the only file.
#   worker: Debian bookworm (mmdebstrap, essential + python3) + the worker's PyPI dependencies
#           (layer "deps", pinned by uv.lock) + the zdtp wheel installed --no-deps (layer "app");
#           ENTRYPOINT zdtp-worker, UID 10001. The base+deps layout is cached on its own so a
#           change to the worker code only rebuilds the small app layer (~10 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ZDTP_CACHE:-$HOME/.cache/zdtp}/node-images
suite=bookworm
mirror=${ZDTP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
worker_uid=10001
py=${PYTHON:-python3}
# uv as the Makefile installs it (python3 -m uv), else on PATH, else the project's venv.
if "$py" -m uv --version >/dev/null 2>&1; then uv=("$py" -m uv)
elif command -v uv >/dev/null 2>&1; then uv=(uv)
elif [ -x "$repo/.venv/bin/uv" ]; then uv=("$repo/.venv/bin/uv")
else echo "zdtp node images: uv not found (run make venv)" >&2; exit 1
fi

log() { echo "zdtp node images: $*" >&2; }
fail() { echo "zdtp node images: $*" >&2; exit 1; }
sha() { sha256sum | cut -c1-16; }
mkdir -p "$cache"

# --- pause ------------------------------------------------------------------------------------
pause_tag=$({ cat "$here/pause.c"; sed -n '/^# --- pause/,/^# --- worker base/p' "$0"; } | sha)
pause_tar="$cache/pause-$pause_tag.tar"
if [ ! -s "$pause_tar" ]; then
  log "building pause image $pause_tag"
  tmp=$(mktemp -d)
  gcc -Os -static -o "$tmp/pause" "$here/pause.c"
  umoci init --layout "$tmp/L" && umoci new --image "$tmp/L:$pause_tag"
  umoci insert --image "$tmp/L:$pause_tag" "$tmp/pause" /pause
  umoci config --image "$tmp/L:$pause_tag" --config.entrypoint /pause --config.user 65535:65535
  umoci gc --layout "$tmp/L"
  tar -C "$tmp/L" -cf "$pause_tar.part" . && mv "$pause_tar.part" "$pause_tar"
  rm -rf "$tmp"
fi
echo "pause zdtp.local/pause:$pause_tag $pause_tar"

# --- worker base: Debian + Python + the worker's dependencies ----------------------------------
deps=(asyncpg "psycopg[binary]" psycopg2-binary pydantic redis)
# Versions come from uv.lock, so the image runs what the tests run on the host.
constraints=$(cd "$repo" && "${uv[@]}" export --frozen --no-hashes --no-emit-project --extra worker \
  --no-header --no-annotate 2>/dev/null) || fail "uv export failed (is uv installed? run make venv)"
base_tag=$(
  {
    sed -n '/^# --- worker base/,/^# --- worker app/p' "$0"
    echo "$suite ${deps[*]}"
    echo "$constraints"
  } | sha
)
base_dir="$cache/worker-base-$base_tag"
if [ ! -s "$base_dir/index.json" ]; then
  log "building worker base image $base_tag (Debian $suite + Python + deps; cold ~2-3 min)"
  tmp=$(mktemp -d)
  rootfs="$tmp/rootfs"
  mmdebstrap --mode=root --variant=essential --quiet \
    --include=python3-minimal,libpython3.11-stdlib,ca-certificates,tzdata \
    --dpkgopt='path-exclude=/usr/share/{doc,man,info,locale}/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    "$suite" "$rootfs" "$mirror" >&2
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
  pyver=$(chroot "$rootfs" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "$constraints" > "$tmp/constraints.txt"
  "${uv[@]}" pip install --quiet --target "$tmp/deps/opt/zdtp/site" --python-version "$pyver" \
    --python-platform x86_64-manylinux_2_36 --only-binary :all: --compile-bytecode \
    -c "$tmp/constraints.txt" "${deps[@]}" >&2
  rm -rf "$tmp/deps/opt/zdtp/site/bin"
  umoci init --layout "$tmp/L" && umoci new --image "$tmp/L:base"
  umoci insert --image "$tmp/L:base" "$rootfs" /
  umoci insert --image "$tmp/L:base" "$tmp/deps/opt/zdtp" /opt/zdtp
  umoci gc --layout "$tmp/L"
  rm -rf "$base_dir.part" && mv "$tmp/L" "$base_dir.part" && mv "$base_dir.part" "$base_dir"
  rm -rf "$tmp"
fi

# --- worker app: the zdtp wheel, entrypoint, user ------------------------------------------------
app_tag=$(
  {
    echo "$base_tag"
    sed -n '/^# --- worker app/,$p' "$0"
    cd "$repo" && find zdtp_worker zdtp_provider pyproject.toml -type f \
      ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
  } | sha
)
worker_tar="$cache/worker-$app_tag.tar"
if [ ! -s "$worker_tar" ]; then
  log "building worker image $app_tag (wheel layer on base $base_tag)"
  tmp=$(mktemp -d)
  (cd "$repo" && "${uv[@]}" build --quiet --wheel --out-dir "$tmp/dist" >&2)
  "${uv[@]}" pip install --quiet --no-deps --target "$tmp/app/opt/zdtp/app" --python-version 3.11 \
    --compile-bytecode "$tmp"/dist/zdtp-*.whl >&2
  rm -rf "$tmp/app/opt/zdtp/app/bin"
  mkdir -p "$tmp/bin"
  printf '%s\n' '#!/usr/bin/python3' 'import sys' 'from zdtp_worker.cli import main' 'sys.exit(main())' \
    > "$tmp/bin/zdtp-worker"
  chmod 755 "$tmp/bin/zdtp-worker"
  cp -a "$base_dir" "$tmp/L"
  umoci tag --image "$tmp/L:base" "$app_tag"
  umoci insert --image "$tmp/L:$app_tag" "$tmp/app/opt/zdtp/app" /opt/zdtp/app
  umoci insert --image "$tmp/L:$app_tag" "$tmp/bin/zdtp-worker" /usr/local/bin/zdtp-worker
  umoci config --image "$tmp/L:$app_tag" --config.entrypoint /usr/local/bin/zdtp-worker \
    --config.user "$worker_uid:$worker_uid" --config.workingdir /tmp \
    --config.env PYTHONPATH=/opt/zdtp/app:/opt/zdtp/site --config.env PYTHONUNBUFFERED=1 \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.label org.opencontainers.image.title=zdtp-worker
  umoci rm --image "$tmp/L:base"
  umoci gc --layout "$tmp/L"
  tar -C "$tmp/L" -cf "$worker_tar.part" . && mv "$worker_tar.part" "$worker_tar"
  rm -rf "$tmp"
fi
# Every worker code change makes a new ~85 MB archive: keep the newest three (and two bases).
ls -1t "$cache"/worker-????????????????.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
ls -1dt "$cache"/worker-base-* 2>/dev/null | tail -n +3 | xargs -r rm -rf
echo "worker zdtp.local/worker:$app_tag $worker_tar"
