# The postgres loader (a PostgreSQL table loaded with COPY, exactly-once).
# Built by `etlctl images build postgres` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="loader" \
      io.etlctl.type="postgres"
ENTRYPOINT ["python3", "-m", "connectors", "loader", "postgres"]
CMD ["spec"]
