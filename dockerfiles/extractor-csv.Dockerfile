# The csv extractor (CSV files (one file or a glob), typed by declaration or inference).
# Built by `etlctl images build csv` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="extractor" \
      io.etlctl.type="csv"
ENTRYPOINT ["python3", "-m", "connectors", "extractor", "csv"]
CMD ["spec"]
