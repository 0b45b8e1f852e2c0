"""Test support: tiny WSGI apps, a raw-socket client and a fixture that runs the real server."""
