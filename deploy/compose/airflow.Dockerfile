# Airflow for the docker-compose stack: the official image plus this repository's provider.
# Built by docker-compose.yaml (context: the repository root); not a production image.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2
FROM ${AIRFLOW_IMAGE}

COPY --chown=airflow:0 pyproject.toml README.md /opt/zdtp/src/
COPY --chown=airflow:0 zdtp_provider /opt/zdtp/src/zdtp_provider
COPY --chown=airflow:0 zdtp_worker /opt/zdtp/src/zdtp_worker

# Pinning apache-airflow to the image's own version keeps pip from upgrading or downgrading
# Airflow while it resolves the provider's dependencies (the official "extend the image" recipe).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /opt/zdtp/src \
 && python -c "import zdtp_provider, zdtp_worker.spec, kubernetes"
