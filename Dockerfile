# presence-svc with its embedded Redis: one container is the whole system.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PRESENCE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY presence_svc ./presence_svc
COPY lua ./lua
RUN pip install . && useradd --system --uid 10001 --home-dir /data presence \
    && mkdir -p /data && chown presence /data

USER presence
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["presence-svc", "serve", "--host", "0.0.0.0", "--port", "8080"]
