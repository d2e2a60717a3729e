# The postgres extractor (a PostgreSQL table or query, streamed with a server-side cursor).
# Built by `etlctl images build postgres` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="extractor" \
      io.etlctl.type="postgres"
ENTRYPOINT ["python3", "-m", "connectors", "extractor", "postgres"]
CMD ["spec"]
