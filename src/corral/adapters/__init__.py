"""Adapters between HTTP events and application calling conventions (WSGI now, ASGI later)."""
