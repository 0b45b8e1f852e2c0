"""Settings for the test project: production-like (DEBUG off, CSRF on), no database."""

from __future__ import annotations

import os

DEBUG = False
SECRET_KEY = "corral-tests-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "apps.django_project.urls"
WSGI_APPLICATION = "apps.django_project.wsgi.application"

INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

# Uploads above 1 MB go to a temporary file, so the 2 MB test upload takes the disk path.
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

USE_TZ = True
# Django exports TIME_ZONE as TZ when settings load; keep log timestamps in UTC.
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

# get_wsgi_application() loads the settings, so with --preload this is the master's pid (the
# URLconf and views load lazily, on a worker's first request, so they could not tell).
LOADED_IN_PID = os.getpid()
