"""ASGI entry point: `apps.django_asgi.asgi:application` (Django's own handler)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.django_asgi.settings")

application = get_asgi_application()
