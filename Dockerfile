# PHIGate container image: `docker build -t phigate .`
# Runs `phigate serve -c /etc/phigate/phigate.yaml` as an unprivileged user.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY protocols ./protocols
COPY policies ./policies
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN groupadd --system phigate \
    && useradd --system --gid phigate --home-dir /var/lib/phigate --shell /usr/sbin/nologin phigate \
    && mkdir -p /etc/phigate /var/lib/phigate/journal /var/lib/phigate/recordings \
    && chown -R phigate:phigate /var/lib/phigate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY examples/policies /etc/phigate/policies
USER phigate
WORKDIR /var/lib/phigate
VOLUME ["/var/lib/phigate/journal", "/var/lib/phigate/recordings"]
EXPOSE 6432 9187
# /healthz is served on the `metrics:` address; the config must enable it (0.0.0.0:9187).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9187/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["phigate"]
CMD ["serve", "-c", "/etc/phigate/phigate.yaml"]
