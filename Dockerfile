# syntax=docker/dockerfile:1
# keykeeper's image: the operator installed from its wheel into a venv, on a pinned slim
# Python, run as a numeric non-root user. The build stage has pip and a compiler's
# worth of tooling; the final stage gets the venv and nothing else.
#
# Every provider's SDK is in the image (the aws, azure, gcp and pkcs11 extras), at the
# versions and hashes uv.lock pins: image.requirements.txt is `make lock`'s export of
# it, and pip installs nothing that file does not name and hash.
#
# The base is pinned by exact version tag. Pin it by digest too where you build
# (python:3.11.7-slim-bookworm@sha256:...): no registry is reachable where this file
# is tested, so no digest here was ever verified, and none is invented.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE image.requirements.txt ./
COPY operator ./operator
# the steps e2e runs too (devtools/e2e/image.py): wheel, then a venv with the locked
# dependencies (hashes required) and the wheel, then no installer left in it
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/keykeeper \
 && /opt/keykeeper/bin/pip install --no-cache-dir --require-hashes --no-deps \
      -r image.requirements.txt \
 && /opt/keykeeper/bin/pip install --no-cache-dir --no-deps /wheels/keykeeper-*.whl \
 && /opt/keykeeper/bin/pip uninstall -y pip setuptools wheel

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="keykeeper" \
      org.opencontainers.image.description="Kubernetes operator keeping API keys encrypted at rest and projecting them only where a policy allows" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/keykeeper/keykeeper" \
      org.opencontainers.image.url="https://keykeeper.dev" \
      org.opencontainers.image.vendor="keykeeper"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/keykeeper/bin:$PATH
COPY --from=build /opt/keykeeper /opt/keykeeper
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/opt/keykeeper/bin/keykeeper", "run"]
