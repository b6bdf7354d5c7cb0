# rnnserve on CPU: `docker build -t rnnserve .` then `docker run -p 8000:8000 rnnserve`.
# Serves the bundled demo models in /app/models; mount another repository there or set RNNSERVE_MODELS.
# Settings come from RNNSERVE_* variables (e.g. RNNSERVE_STORE_URL=redis://redis:6379/0, RNNSERVE_WORKERS=2).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    RNNSERVE_MODELS=/app/models \
    RNNSERVE_PORT=8000

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin rnnserve

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the dependencies change.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
    && pip install -r requirements.txt

# Then the package itself (no dependency resolution left to do), and the models it serves.
COPY README.md ./
COPY service ./service
RUN pip install --no-deps . && rm -rf /src/*

WORKDIR /app
COPY models ./models

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ['RNNSERVE_PORT'], timeout=2)"]
CMD ["rnnserve", "serve", "--host", "0.0.0.0"]
