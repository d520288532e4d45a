# syntax=docker/dockerfile:1.7
# DIAL service images. One image per variant runs any of the three services:
#   docker build --target cpu -t dial:0.1.0-cpu .
#   docker build --target gpu -t dial:0.1.0-gpu .
#   docker build --target cpu --build-arg MODELS=models-baked -t dial:0.1.0-cpu-models .
#   docker run dial:0.1.0-cpu segmenter        # or: adapter, acquisition
#
# MODELS=models-mounted (default) ships no weights: the model repository is a
# volume at /models (a read-only PVC in deploy/k8s). MODELS=models-baked copies
# ./models into the image, so a model version rolls out as an image tag.
#
# The root filesystem is meant to run read-only: everything the services
# write goes to volumes (/tmp, the ONNX model cache, the adapter's session
# store). Health is probed with Kubernetes' native gRPC probes on the plaintext
# health port (DIAL_HEALTH_PORT); there is no shell probe to keep in the image.
#
# Base images are pinned by tag; pin them by digest in your registry mirror.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG MODELS=models-mounted

# ---- model repository sources (selected by MODELS) ----------------------------
FROM scratch AS models-mounted
COPY deploy/docker/no-models/ /models/

FROM scratch AS models-baked
COPY models/ /models/

FROM ${MODELS} AS models

# ---- CPU ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/dial
ENV PATH=/opt/dial/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
# torch first and from the CPU index: constraints.txt pins torch==2.13.0, which
# the CPU index serves as 2.13.0+cpu; from PyPI the resolver would pull the
# CUDA build and ~16 nvidia-* wheels into a CPU image.
RUN pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY clients/python/ clients/python/
COPY pyproject.toml setup.py README.md ARCHITECTURE.md ./
COPY dial/ dial/
COPY services/ services/
COPY protos/ protos/
RUN pip install -c constraints.txt ./clients/python .

FROM ${PYTHON_IMAGE} AS runtime-cpu
COPY --from=cpu-build /opt/dial /opt/dial

# ---- GPU ---------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/dial
ENV PATH=/opt/dial/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
# The CUDA torch for DISCA adaptation and acquisition; ==2.13.0 in the
# constraints admits the +cu128 local version from this index.
RUN pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0
COPY clients/python/ clients/python/
COPY pyproject.toml setup.py README.md ARCHITECTURE.md ./
COPY dial/ dial/
COPY services/ services/
COPY protos/ protos/
RUN pip install -c constraints.txt ./clients/python .
# Both wheels install the same `onnxruntime` module; with both present the
# CPU one can win and the TensorRT/CUDA providers silently disappear.
ARG TENSORRT_PACKAGE=tensorrt-cu12-libs
RUN pip uninstall -y onnxruntime \
 && pip install -c constraints.txt onnxruntime-gpu ${TENSORRT_PACKAGE}

FROM ${CUDA_IMAGE} AS runtime-gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=gpu-build /opt/dial /opt/dial

# ---- final images --------------------------------------------------------------
FROM runtime-cpu AS cpu
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --gid 10001 dial && useradd --uid 10001 --gid 10001 --no-create-home \
    --home-dir /tmp --shell /usr/sbin/nologin dial \
 && mkdir -p /var/cache/dial /var/lib/dial/sessions /var/lib/dial/queues /data \
 && chown 10001:10001 /var/cache/dial /var/lib/dial/sessions /var/lib/dial/queues
COPY --from=models --chown=0:0 /models/ /models/
# No GLIBC_TUNABLES here: the `dial` entrypoint applies the malloc tunables
# (services/malloc.env, their one source) by re-executing itself once at start.
ENV PATH=/opt/dial/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp XDG_CACHE_HOME=/tmp/.cache MPLCONFIGDIR=/tmp/matplotlib \
    DIAL_MODEL_REPO=/models DIAL_MODEL_CACHE=/var/cache/dial DIAL_SESSION_STORE=/var/lib/dial/sessions \
    DIAL_JOB_STORE=/var/lib/dial/queues \
    DIAL_PROVIDER=cpu
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 50052 50053 8081 9101 9102 9103
ENTRYPOINT ["dial", "serve"]
CMD ["segmenter"]

FROM runtime-gpu AS gpu
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --gid 10001 dial && useradd --uid 10001 --gid 10001 --no-create-home \
    --home-dir /tmp --shell /usr/sbin/nologin dial \
 && mkdir -p /var/cache/dial /var/lib/dial/sessions /var/lib/dial/queues /data \
 && chown 10001:10001 /var/cache/dial /var/lib/dial/sessions /var/lib/dial/queues
COPY --from=models --chown=0:0 /models/ /models/
ENV PATH=/opt/dial/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp XDG_CACHE_HOME=/tmp/.cache MPLCONFIGDIR=/tmp/matplotlib \
    DIAL_MODEL_REPO=/models DIAL_MODEL_CACHE=/var/cache/dial DIAL_SESSION_STORE=/var/lib/dial/sessions \
    DIAL_JOB_STORE=/var/lib/dial/queues \
    DIAL_PROVIDER=auto \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 50052 50053 8081 9101 9102 9103
ENTRYPOINT ["dial", "serve"]
CMD ["segmenter"]
