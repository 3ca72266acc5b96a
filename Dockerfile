# The web app and the CPU-side workers. The vllm service uses vLLM's own image; the train-worker
# builds this file with EXTRAS=gpu on a CUDA base (see docker-compose.yml).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY webapp webapp
COPY curation curation
COPY workers workers
COPY training training
COPY manage.py ./
ARG EXTRAS=""
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".${EXTRAS:+[$EXTRAS]}" \
    && python manage.py collectstatic --noinput

# Model-written code runs in bubblewrap under an unprivileged user; the app never runs as root.
RUN useradd --create-home --uid 1000 app
USER app
EXPOSE 8000
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "120"]
