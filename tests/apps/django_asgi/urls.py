"""URL map: the routes every framework app answers (apps/asgi_common.py lists them), without
the WebSocket and the lifespan state, which Django's ASGI handler does not have."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("json", views.json_route),
    path("items/<int:item_id>", views.item),
    path("echo", views.echo),
    path("upload", views.upload),
    path("stream", views.stream),
    path("pid", views.pid),
    path("boom", views.boom),
]
