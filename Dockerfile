# syntax=docker/dockerfile:1
# keykeeper's image: the operator installed from its wheel into a venv, on Debian's own
# Python, run as a numeric non-root user. The build stage has pip; the final stage gets
# the venv and nothing else.
#
# Every provider's SDK is in the image (the aws, azure, gcp and pkcs11 extras), at the
# versions and hashes uv.lock pins: image.requirements.txt is `make lock`'s export of
# it, and pip installs nothing that file does not name and hash.
#
# The base is Debian bookworm (minbase) with python3, python3-venv and ca-certificates
# from Debian's archive, security updates included: `make base-image` makes it from
# packages with mmdebstrap (devtools/image/base.sh), so it is built here from the same
# archive a registry's debian image is. BASE names it; where a registry serves a base
# with those three packages, pass it by digest.
ARG BASE=localhost/keykeeper-base:bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# the locked dependencies first (hashes required), in a layer of their own: a change
# of keykeeper's code rebuilds only the layer below
COPY image.requirements.txt ./
RUN python3 -m venv /opt/keykeeper \
 && /opt/keykeeper/bin/pip install --no-cache-dir --require-hashes --no-deps \
      -r image.requirements.txt
# then keykeeper's wheel, built by that venv's pip, and no installer left in the venv
COPY pyproject.toml README.md LICENSE ./
COPY operator ./operator
RUN /opt/keykeeper/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/keykeeper/bin/pip install --no-cache-dir --no-deps /wheels/keykeeper-*.whl \
 && /opt/keykeeper/bin/pip uninstall -y pip setuptools

FROM ${BASE}
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
