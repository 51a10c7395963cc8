# syntax=docker/dockerfile:1
# zdtp worker image: the `zdtp-worker` CLI and its PostgreSQL drivers, nothing else (no Airflow).
#
#   docker build -t zdtp/worker:0.1.0 .
#
# Runs as UID/GID 10001 (numeric, so Kubernetes' runAsNonRoot can verify it), needs no writable
# path but /tmp (the pod mounts an emptyDir there), and writes its result to
# /dev/termination-log. tests/unit/packaging/test_worker_image.py installs exactly what this file
# installs into a directory and checks it without a container engine.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of zdtp_worker only ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only the worker package is copied: the wheel then holds zdtp_worker and not zdtp_provider
# (the build backend skips a listed package that is absent).
COPY pyproject.toml README.md ./
COPY zdtp_worker ./zdtp_worker
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -c "import glob, sys, zipfile; \
names = zipfile.ZipFile(glob.glob('/dist/zdtp-*.whl')[0]).namelist(); \
ok = 'zdtp_worker/cli.py' in names and not any(n.startswith('zdtp_provider/') for n in names); \
sys.exit(0 if ok else 'the wheel must hold zdtp_worker and not zdtp_provider')"

# --- install into a prefix that is copied whole into the runtime stage ---------------------
COPY deploy/worker-image/requirements.txt /tmp/requirements.txt
# The wheel's metadata lists the Airflow-side dependencies too; --no-deps keeps them out and
# the pinned requirements supply exactly what the worker imports.
# The wheel also declares the provider's `zdtp` command; its code is not in this image, so the
# script is removed rather than left to fail with an ImportError.
RUN pip install --prefix=/install --no-deps --only-binary=:all: -r /tmp/requirements.txt \
 && pip install --prefix=/install --no-deps /dist/zdtp-*.whl \
 && rm -f /install/bin/zdtp

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="zdtp-worker" \
      org.opencontainers.image.description="zdtp data-sync worker: full (resumable snapshot copy) and incremental (logical-replication CDC) PostgreSQL sync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/zdtp/zdtp" \
      org.opencontainers.image.documentation="https://github.com/zdtp/zdtp/tree/main/docs" \
      org.opencontainers.image.vendor="zdtp"

COPY --from=build /install /usr/local

# A named user helps `ps` and `id`; USER stays numeric for runAsNonRoot. No home directory:
# HOME is /tmp, the only writable path under a read-only root filesystem.
RUN groupadd --system --gid 10001 zdtp \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin zdtp \
 && python -c "import zdtp_worker.full.main, zdtp_worker.incremental.main" \
 && ! python -c "import airflow" 2>/dev/null

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    TMPDIR=/tmp

USER 10001:10001
WORKDIR /tmp
# The CDC worker's health endpoint (IncrementalOptions.health_port); full sync listens on nothing.
EXPOSE 8080
ENTRYPOINT ["zdtp-worker"]
CMD ["--help"]
