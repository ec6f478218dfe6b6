# The flagshare service image: `flagshare serve`, `flagshare worker` and `flagshare db upgrade`
# (docker-compose.yml runs each as its own service). Runs as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FLAGSHARE_POLICY_DIR=/app/policies

WORKDIR /app
COPY pyproject.toml ./
COPY api ./api
COPY adapters ./adapters
RUN pip install --no-compile . && rm -rf api adapters
COPY policies ./policies

RUN useradd --system --uid 10001 --home-dir /app flagshare
USER flagshare
EXPOSE 8000
CMD ["flagshare", "serve", "--host", "0.0.0.0", "--port", "8000"]
