# syntax=docker/dockerfile:1
# The retdm worker: the pinned Python environment of requirements.txt plus the DVC S3 remote
# (requirements-worker.txt), running a Prefect process worker. The repository checkout is
# mounted at /repo at run time (infra/docker-compose.yml), so stages run the code and write the
# dvc.lock of that checkout; the image only carries the environment.
# Build from the repository root: docker build -f infra/worker.Dockerfile -t retdm-worker:cpu .
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   CPU-only torch (smaller)
#   --build-arg RETDM_UID=$(id -u) --build-arg RETDM_GID=$(id -g)      own the mounted checkout
FROM python:3.11-slim

ARG RETDM_UID=1000
ARG RETDM_GID=1000
# Empty: torch from PyPI (the CUDA build on x86-64). An index URL: tried besides PyPI, e.g. the
# CPU-only wheels; the pins in requirements.txt still decide the versions.
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: DVC reads the checkout's repository. The mounted checkout belongs to the host user, so
# git (and libgit2) must be told it is safe to open. Debian's git, unpinned: the base image's
# release decides it, and a pin would break the build at its next point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && git config --system --add safe.directory /repo

WORKDIR /repo

# Dependencies first, in their own layer: code changes do not reinstall torch. By default the
# locked environment (infra/requirements-worker.lock: every package pinned, every file's sha256
# checked); the CPU-only torch of TORCH_INDEX_URL is another file than the one locked, so that build
# resolves from the pins of requirements.txt instead.
COPY requirements.txt infra/requirements-worker.txt infra/requirements-worker.lock /tmp/requirements/
RUN if [ -z "$TORCH_INDEX_URL" ]; then \
      pip install --require-hashes -r /tmp/requirements/requirements-worker.lock; \
    else \
      pip install --extra-index-url "$TORCH_INDEX_URL" -r /tmp/requirements/requirements.txt \
        -r /tmp/requirements/requirements-worker.txt; \
    fi

# The project, editable at /repo: the mounted checkout replaces these files at run time and the
# installed `retdm` follows it.
COPY pyproject.toml README.md /repo/
COPY retdm /repo/retdm
RUN pip install --no-deps -e /repo

# --non-unique: the host's ids may already name a system user or group of the image.
RUN groupadd --non-unique --gid "$RETDM_GID" retdm \
 && useradd --non-unique --uid "$RETDM_UID" --gid "$RETDM_GID" --create-home --shell /bin/bash retdm \
 && chown -R retdm:retdm /repo
USER ${RETDM_UID}:${RETDM_GID}

# The compose file sets the pool; this default is infra/prefect.yaml's.
CMD ["prefect", "worker", "start", "--pool", "retdm-local", "--type", "process", "--with-healthcheck"]
