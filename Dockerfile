# staffvoice: one image for `staffvoice serve` (and `schedule run-due`, `programme load`, ...).
# Slim base, no compilers (every dependency ships manylinux wheels), runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STAFFVOICE_HOST=0.0.0.0 \
    STAFFVOICE_PORT=3978 \
    STAFFVOICE_LOG_JSON=1 \
    STAFFVOICE_DATABASE_URL=sqlite+svinline:////data/staffvoice.db \
    STAFFVOICE_SECRET_FILE=/data/.staffvoice-secret

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
COPY staffvoice ./staffvoice
COPY examples ./examples
COPY manifest ./manifest
# Installed from the source tree (editable) so the Alembic migrations, which are not a Python
# package, are found next to the code.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin staffvoice \
    && mkdir -p /data && chown staffvoice /data

USER 10001
WORKDIR /data
EXPOSE 3978
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STAFFVOICE_PORT', '3978'), timeout=4)"
ENTRYPOINT ["staffvoice"]
CMD ["serve"]
