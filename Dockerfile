# Two images from one file (docker-compose.yml picks the target):
#   web    - the web process, the scoring workers and Celery beat: no PyTorch (requirements-web.txt)
#   worker - the benchmark (GPU) workers: the web image's packages plus PyTorch (requirements-worker.txt)
# The PyPI torch wheels for Linux x86_64 bundle their CUDA libraries; a GPU host needs only the
# NVIDIA driver and the NVIDIA Container Toolkit (compose's `gpus` device reservation).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    DJANGO_STATIC_ROOT=/app/staticfiles

# libicu-dev, pkg-config and g++ build PyICU (the TR 39 confusable skeleton of method names).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libicu-dev pkg-config g++ \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home vadi
WORKDIR /app

# Dependency layers first, so that they are cached across source changes.
FROM base AS web-deps
COPY requirements-web.txt ./
RUN pip install -r requirements-web.txt
# The web image must never carry PyTorch: fail the build if a dependency pulled it in.
RUN python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'torchvision', 'timm') if u.find_spec(m)]; sys.exit(f'web image must not install {bad}' if bad else 0)"

FROM web-deps AS worker-deps
COPY requirements-worker.txt ./
RUN pip install -r requirements-worker.txt

FROM web-deps AS web
COPY . .
# collectstatic needs settings, not a secret: a throw-away random key that the image does not keep.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R vadi /app/var
USER vadi
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]

FROM worker-deps AS worker
COPY . .
RUN mkdir -p /app/var && chown -R vadi /app/var
USER vadi
# One benchmark worker per visible GPU (scripts/gpu_workers.py).
CMD ["python", "scripts/gpu_workers.py"]
