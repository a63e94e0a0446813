# notifier: one image for the HTTP API (default command) and the Celery workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TEMPLATES_DIR=/app/templates

RUN groupadd --system --gid 10001 notifier \
 && useradd --system --uid 10001 --gid notifier --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin notifier

WORKDIR /app

# Dependencies get their own layer, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Then the source and the package itself, without touching the dependencies installed above.
# .dockerignore limits the context to the package, the templates (now /app/templates) and
# the project metadata.
COPY . /app
RUN pip install --no-deps /app \
 && rm -rf /app/build /app/*.egg-info

# The code and templates stay owned by root: the service reads them and writes nothing here.
USER notifier:notifier

EXPOSE 8000

# Probes the API. Worker containers override this in docker-compose.yml with a Celery ping.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["notifier", "api", "--host", "0.0.0.0"]
