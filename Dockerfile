# The gefapi image: the API (default command), the Celery worker and beat, and the admin
# container all run it (docker-compose.*.yml). Build:
#   docker build -t gefapi/api .
#   docker build --network host --build-arg BASE_IMAGE=local/debian-python:bookworm -t gefapi/api .
# BASE_IMAGE needs python3 with venv and /etc/ssl/certs/ca-certificates.crt (Debian's
# ca-certificates); the official python:3.11-slim has both.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Optional extra CA certificates, for networks whose proxy intercepts TLS: put PEM files named
# *.crt or *.pem in a ca/ folder next to this Dockerfile. They are appended to the system
# bundle, which pip uses during the build and Python (ssl, requests) at run time.
# `c[a]` is a wildcard that matches the ca/ folder when it exists and nothing otherwise
# (requirements.txt keeps the COPY from being empty), so the folder is optional.
COPY requirements.txt c[a] /tmp/gefapi-build/
RUN set -e; \
    mkdir -p /usr/local/share/gefapi-ca; \
    bundle=/usr/local/share/gefapi-ca/bundle.pem; \
    cat /etc/ssl/certs/ca-certificates.crt > "$bundle"; \
    for extra in /tmp/gefapi-build/*.crt /tmp/gefapi-build/*.pem; do \
        if [ -f "$extra" ]; then echo >> "$bundle"; cat "$extra" >> "$bundle"; fi; \
    done
ENV PIP_CERT=/usr/local/share/gefapi-ca/bundle.pem \
    REQUESTS_CA_BUNDLE=/usr/local/share/gefapi-ca/bundle.pem \
    SSL_CERT_FILE=/usr/local/share/gefapi-ca/bundle.pem

# A virtualenv (Debian's python refuses system-wide pip installs, PEP 668).
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -r /tmp/gefapi-build/requirements.txt \
    && rm -rf /tmp/gefapi-build
ENV PATH=/opt/venv/bin:$PATH

# The code belongs to root and is read-only for the service user; it writes only to the
# instance folder and /var/lib/gefapi (mount a volume there for STORAGE_URL).
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin gefapi \
    && mkdir -p /app/instance /var/lib/gefapi/storage \
    && chown -R gefapi:gefapi /app/instance /var/lib/gefapi
WORKDIR /app
COPY main.py gunicorn.conf.py ./
COPY migrations/ migrations/
COPY environment/ environment/
COPY gefapi/ gefapi/
# Bytecode compiled now: the service user cannot write __pycache__ next to the code.
RUN python -m compileall -q main.py gunicorn.conf.py gefapi migrations

ENV FLASK_APP=main \
    PORT=5000 \
    WEB_CONCURRENCY=2
USER 10001:10001
EXPOSE 5000

# No curl in slim images: Python's urllib. Worker and beat containers override this (compose).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '5000') + '/api-health', timeout=4)"]

# GUNICORN_CMD_ARGS adds gunicorn options (e.g. --timeout 120 --forwarded-allow-ips '*').
CMD ["sh", "-c", "exec gunicorn --bind \"0.0.0.0:${PORT:-5000}\" --workers \"${WEB_CONCURRENCY:-2}\" --worker-tmp-dir /dev/shm --access-logfile - main:app"]
