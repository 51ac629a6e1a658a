"""Django settings of the Channels example (see asgi.py for how to run it)."""

from __future__ import annotations

import os
import secrets

# A dev-only key when none is given; set DJANGO_SECRET_KEY in any real deployment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "examples.channels_guard.urls"
ASGI_APPLICATION = "examples.channels_guard.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
MIDDLEWARE: list[str] = []
USE_TZ = True
