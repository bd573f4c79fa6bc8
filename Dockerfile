# syntax=docker/dockerfile:1.7
# Two stages: `build` installs the pipeline (CPU torch) and runs `make models`;
# `runtime` carries only the service's dependencies and the built models, no torch.
#
#   docker build --build-context shared=../shared -t compressed-embeddings .
#   (docker compose passes the same context: see docker-compose.yml)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    EMBED_DATA_DIR=/shared/data
# The venv the Makefile expects, with torch taken from the CPU index first so that
# nothing later can pull the multi-GB CUDA build.
RUN python -m venv .venv \
    && .venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml Makefile README.md ./
COPY common common
COPY compression compression
COPY service service
COPY models/recipes.toml models/recipes.toml
COPY --from=shared data /shared/data
RUN make models && rm -rf models/.cache

FROM ${PYTHON_IMAGE} AS runtime
# Variants the image serves: the baseline beside the compressed ones, so the
# dashboards can compare them. (The SVD reference is built but not shipped.)
ARG SERVE_MODELS="minilm-l6 minilm-l6-int8 minilm-l6-fact"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    EMBED_HOST=0.0.0.0 EMBED_PORT=8000 EMBED_MODELS_DIR=/app/models \
    EMBED_DEFAULT_MODEL=minilm-l6-fact
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common common
COPY service service
COPY deploy/slim-venv.sh /usr/local/bin/slim-venv
# Only the service's extra: onnxruntime, tokenizers, fastapi, uvicorn, prometheus-client.
RUN python -m venv /opt/venv && pip install '.[service]' && rm -rf build *.egg-info \
    && slim-venv /opt/venv
RUN --mount=type=bind,from=build,source=/src/models,target=/built \
    mkdir -p models && for m in $SERVE_MODELS; do cp -r /built/$m models/$m; done
RUN useradd --system --uid 10001 --no-create-home embed
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# The README's serve target runs exactly this once the models exist.
CMD ["python", "-m", "service"]

# Traffic for the dashboards (docker compose --profile loadgen up).
FROM runtime AS loadgen
USER root
RUN python -m ensurepip && python -m pip install httpx==0.28.1
COPY bench/__init__.py bench/loadgen.py bench/
COPY --from=shared data/stsbenchmark/sts-dev.csv /data/sts-dev.csv
USER 10001
ENTRYPOINT ["python", "-m", "bench.loadgen"]
CMD ["--url", "http://api:8000", "--sentences", "/data/sts-dev.csv"]
