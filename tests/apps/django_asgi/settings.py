"""Settings for the ASGI test project: production-like (DEBUG off, CSRF on), no database."""

from __future__ import annotations

DEBUG = False
SECRET_KEY = "corral-tests-only-not-a-secret-asgi-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "apps.django_asgi.urls"
ASGI_APPLICATION = "apps.django_asgi.asgi.application"

INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

USE_TZ = True
TIME_ZONE = "UTC"  # Django exports it as TZ: keep the server's log timestamps in UTC
LANGUAGE_CODE = "en-us"
