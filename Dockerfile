# syntax=docker/dockerfile:1
# The loopml image: the model server (the default command), the package fetcher the
# Kubernetes initContainer runs, and the platform itself, from one install.
#
#   docker build -t loopml:dev .
#   docker run --rm -p 8080:8080 -v "$PWD/pkg:/pkg:ro" loopml:dev \
#       --package /pkg --manifest-sha256 HASH --name churn --version 3 \
#       --deployment churn-prod --host 0.0.0.0 --allow-remote --port 8080
#   docker run --rm --entrypoint python loopml:dev -m loopml.sdk.fetch --help
#   docker run --rm -p 8765:8765 --entrypoint loopml loopml:dev up --help
#
# docs/kubernetes.md describes the image and how the rendered manifests use it.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install loopml and its dependencies into a virtual environment ----------
FROM ${PYTHON_IMAGE} AS build
# Every dependency ships manylinux wheels for amd64 and arm64, so no compiler is needed;
# the build stage exists so pip, its caches and the source tree stay out of the image.
ARG LOOPML_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/loopml
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/loopml/bin/pip install --no-cache-dir ".${LOOPML_EXTRAS}"

# ---- runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="loopml" \
      org.opencontainers.image.description="loopml model server and platform" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp1: LightGBM's shared library links the system OpenMP runtime (the slim image has
# none); apt's lists are removed in the same layer.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 loopml \
    && useradd --system --uid 10001 --gid loopml --home-dir /home/loopml --create-home \
        --shell /usr/sbin/nologin loopml
COPY --from=build /opt/loopml /opt/loopml
# PYTHONDONTWRITEBYTECODE: the pods run on a read-only root filesystem (pip compiled the
# bytecode at install). OMP_WAIT_POLICY=passive: ONNX Runtime's and LightGBM's threads
# sleep instead of spinning between requests, which matters on a shared node.
ENV PATH=/opt/loopml/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_WAIT_POLICY=passive \
    LOOPML_HOME=/home/loopml/.loopml
USER 10001:10001
WORKDIR /home/loopml
# 8080: the model server in the manifests; 8765: the platform (`loopml up`).
EXPOSE 8080 8765
# No HEALTHCHECK: Kubernetes probes /v2/health/live and /v2/health/ready.
ENTRYPOINT ["python", "-m", "loopml.serve"]
CMD ["--help"]
