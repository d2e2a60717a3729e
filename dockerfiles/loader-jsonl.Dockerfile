# The jsonl loader (a JSON Lines file, replaced atomically on full refresh).
# Built by `etlctl images build jsonl` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="loader" \
      io.etlctl.type="jsonl"
ENTRYPOINT ["python3", "-m", "connectors", "loader", "jsonl"]
CMD ["spec"]
