# Conveyor's image for the distributed runtime (docker-compose.yaml): Airflow 3 (api-server,
# scheduler, dag-processor, triggerer, Celery worker), the MLflow server and the model service
# all run from it. Dependencies come from uv.lock, exactly: `uv sync --frozen`.
#
#   docker compose build          (or: docker build -t conveyor-mlops:local .)
FROM python:3.11-slim-bookworm

# uv itself is installed with pip (as the Makefile does); pin it for reproducible builds.
ARG UV_VERSION=0.13.9
ARG CONVEYOR_UID=50000

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/conveyor/.venv \
    PATH=/opt/conveyor/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    CONVEYOR_PROJECT_DIR=/opt/conveyor \
    CONVEYOR_HOME=/data/conveyor \
    GX_ANALYTICS_ENABLED=false \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1

# git: the DVC data registry is a git repository; curl: healthchecks; tini: PID 1 that
# forwards signals (warm shutdown of Celery workers) and reaps task processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git curl tini \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /opt/conveyor

# Dependencies first (cached while only our code changes), from the lock, without dev tools.
COPY pyproject.toml uv.lock README.md ./
# The extras the compose services use: model service, S3/MinIO, Celery, Postgres, Redis.
RUN uv sync --frozen --no-dev --extra distributed --no-install-project

# Then the project itself. Conveyor finds dags/ and include/pipelines/ through
# CONVEYOR_PROJECT_DIR=/opt/conveyor (set below and in docker-compose.yaml), not its install path.
COPY include/ include/
COPY plugins/ plugins/
COPY dags/ dags/
RUN uv sync --frozen --no-dev --extra distributed --no-editable

# A non-root user (Airflow's image uses the same UID) owning the directories that become
# named volumes, so Docker initialises them with this owner.
RUN useradd --uid "${CONVEYOR_UID}" --gid 0 --create-home --home-dir /home/conveyor conveyor \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /data \
    && chown -R "${CONVEYOR_UID}:0" /opt/airflow /data \
    && chmod -R g+rwX /opt/airflow /data

USER ${CONVEYOR_UID}
WORKDIR /opt/airflow

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
