# syntax=docker/dockerfile:1
# Build: dependencies in their own layer, then the code; runtime without build tools, non-root.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
# Install the pinned dependencies alone first, so code changes reuse this layer.
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt
COPY service ./service
RUN pip install --no-deps .

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="regen-sync" \
      org.opencontainers.image.description="Data-fixed events on Kafka to Zuora / SoftwareOne regeneration calls"
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin regen
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]
ENTRYPOINT ["regen-sync", "run"]
