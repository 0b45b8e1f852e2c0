"""A minimal Django project served through Django's own ASGI handler (no Channels) in the asgi
worker's framework tests: async and sync views, no database, no contrib apps."""
