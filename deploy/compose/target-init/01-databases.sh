#!/bin/bash
# One database per example sync task in dags/syncs/ (each writes to its own target connection,
# see AIRFLOW_CONN_ZDTP_DEMO_TARGET* in docker-compose.yaml). Runs once, on an empty volume.
set -euo pipefail
for db in ${ZDTP_TARGET_DATABASES:-}; do
  echo "creating database ${db}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE \"${db}\" OWNER \"${POSTGRES_USER}\""
done
