# syntax=docker/dockerfile:1
# cellstate inference image: onnxruntime + FastAPI + the committed models. No torch, no training code.
#
#   docker build -t cellstate .
#   docker run --rm -p 8000:8000 cellstate          # or: docker compose up
#
# Stage 1 builds the virtual environment from requirements/runtime.txt alone, so the layer is rebuilt only when
# the locked dependencies change, never when code or models change. Stage 2 copies that venv, the service package
# and models/ onto a clean base and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A venv without pip or setuptools: the base image's pip installs into it (pip --python), keeping both out of
# the runtime image.
RUN python -m venv --without-pip /opt/venv
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip --python /opt/venv/bin/python install --no-deps --requirement /tmp/runtime.txt \
    && pip --python /opt/venv/bin/python check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CELLSTATE_HOST=0.0.0.0 \
    CELLSTATE_PORT=8000 \
    CELLSTATE_MODELS_DIR=/app/models \
    CELLSTATE_LOG_FORMAT=json \
    CELLSTATE_FORWARDED_ALLOW_IPS=*
RUN groupadd --system --gid 10001 cellstate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin cellstate
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code and models stay owned by root: the service user can read them, not change them.
COPY service/ ./service/
COPY models/ ./models/
USER 10001:10001
EXPOSE 8000
# Exec form: python (uvicorn) is PID 1 and receives SIGTERM itself; it stops accepting connections and lets
# in-flight requests finish for CELLSTATE_GRACEFUL_SHUTDOWN_SECONDS (compose gives it stop_grace_period: 30s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CELLSTATE_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "service"]
