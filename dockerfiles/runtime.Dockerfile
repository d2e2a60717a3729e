# The shared layer of every built-in connector image: Python, the connectors' libraries and
# the `connectors` package. Built by `etlctl images build` (etlctl/runtime/images.py), which
# puts into the build context:
#   wheels/            a wheelhouse (pip's own wheel, the requirements' wheels, requirements.txt)
#   connectors/        the connectors package
# Nothing is downloaded at build time: hosts whose containers cannot reach PyPI build it too.
#
# BASE_IMAGE must provide python3 3.11 (the wheelhouse holds cp311 wheels). Hosts without a
# registry pass a local one: scripts/build-base-image.sh, then --base-image.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS install
COPY wheels/ /tmp/wheels/
# The debootstrap base image has no pip: run pip from its own wheel (a wheel is a zip that
# Python can execute from).
RUN set -eu; \
    pip_wheel="$(ls /tmp/wheels/pip-*.whl | head -n 1)"; \
    python3 "$pip_wheel/pip" install --no-index --no-cache-dir --disable-pip-version-check \
        --root-user-action=ignore \
        --find-links /tmp/wheels --target /opt/etlctl/site -r /tmp/wheels/requirements.txt
COPY connectors/ /opt/etlctl/app/connectors/
# Compile now: containers run as the host user and cannot write __pycache__ into /opt.
RUN python3 -m compileall -q /opt/etlctl/app /opt/etlctl/site >/dev/null \
    && chmod -R a+rX,go-w /opt/etlctl

# A second stage keeps the wheelhouse out of the final image's layers.
FROM ${BASE_IMAGE}
COPY --from=install /opt/etlctl/ /opt/etlctl/
ENV PYTHONPATH=/opt/etlctl/app:/opt/etlctl/site \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LANG=C.UTF-8
# Any uid may run it (etlctl uses the host user's uid:gid, which has no passwd entry here).
WORKDIR /tmp
LABEL io.etlctl.protocol="2" \
      org.opencontainers.image.title="etlctl connector runtime" \
      org.opencontainers.image.source="https://github.com/etlctl/etlctl"
ENTRYPOINT ["python3", "-m", "connectors"]
