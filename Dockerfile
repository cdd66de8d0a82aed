# syntax=docker/dockerfile:1
# regen-sync: a virtualenv built in one stage, copied into a slim runtime that runs as uid 10001
# and writes nothing outside /tmp, so it runs with a read-only root filesystem.
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t regen-sync .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The pinned dependencies alone first: a change to the code reuses this layer.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && pip install --requirement requirements.txt
COPY README.md ./
COPY service/regen_sync ./service/regen_sync
# pip compiles the bytecode here: at run time nothing can be written next to the sources.
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="regen-sync" \
      org.opencontainers.image.description="Consumes 'data fixed' billing events from Kafka, calls the Zuora / SoftwareOne regeneration APIs and publishes the outcome" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
RUN groupadd --gid 10001 regen \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin regen
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp
USER 10001:10001
EXPOSE 8080
# The service drains in-flight events, commits and exits 0 on SIGTERM; exec form below makes
# it PID 1, so the signal reaches it and not a shell.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('REGEN_HTTP__PORT', '8080'), timeout=2)"]
ENTRYPOINT ["regen-sync", "run"]
