"""Entry point for gunicorn: `gunicorn -c services/gateway/gunicorn_conf.py services.gateway.wsgi:app`.

Each gunicorn worker imports this after the fork (no preload), so Redis, S3 and broker connections are never
shared between processes. Logging is configured here, by the process, not by the app factory.
"""

from __future__ import annotations

from services.gateway.app import create_app
from shared.logging import configure_logging
from shared.settings import get_settings

configure_logging(get_settings(), "gateway")
app = create_app(get_settings())
