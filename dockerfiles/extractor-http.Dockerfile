# The http extractor (a paginated JSON API over HTTP(S), with retries and backoff).
# Built by `etlctl images build http` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="extractor" \
      io.etlctl.type="http"
ENTRYPOINT ["python3", "-m", "connectors", "extractor", "http"]
CMD ["spec"]
