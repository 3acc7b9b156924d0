# One image for the web process and the workers; the command chooses which (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings

# libicu-dev, pkg-config and g++ build PyICU (the TR 39 confusable skeleton of method names).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libicu-dev pkg-config g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Requirements first, so the dependency layer is cached across source changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings, not a secret: a throw-away random key that the image does not keep.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput

RUN useradd --create-home vadi && mkdir -p /app/var && chown -R vadi /app/var
USER vadi
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
