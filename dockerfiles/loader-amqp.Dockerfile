# The amqp loader (publishes each record as a message to a RabbitMQ exchange).
# Built by `etlctl images build amqp` on top of the runtime image (runtime.Dockerfile);
# run it as `docker run IMAGE spec|check|run` (docs/connector-protocol.md).
ARG RUNTIME_IMAGE=etlctl/connector-runtime:0.1.0
FROM ${RUNTIME_IMAGE}
LABEL io.etlctl.protocol="2" \
      io.etlctl.role="loader" \
      io.etlctl.type="amqp"
ENTRYPOINT ["python3", "-m", "connectors", "loader", "amqp"]
CMD ["spec"]
