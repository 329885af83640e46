"""The Celery worker: `celery -A services.worker.app worker -Q portraits`.

Production's app: settings from the environment, the portrait engine as every render process's renderer. The
app's wiring (signals, concurrency, the task) is services/worker/wiring.py; a render process's state is
services/worker/process.py.
"""

from __future__ import annotations

from celery import Celery

from services.worker.process import load_portrait_engine
from services.worker.wiring import create_worker_app
from shared.settings import get_settings

app: Celery = create_worker_app(get_settings(), load_portrait_engine)
