"""URL map; the RedirectView resolves its target lazily, after the URLconf has loaded."""

from __future__ import annotations

from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("hello/", views.hello, name="hello"),
    path("pid/", views.pid, name="pid"),
    path("form/", views.form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
    path("large.json", views.large_json, name="large-json"),
    path("cookie/set/", views.cookie_set, name="cookie-set"),
    path("cookie/get/", views.cookie_get, name="cookie-get"),
    path("redirect/", views.redirect_to_form, name="redirect"),
    path("home/", RedirectView.as_view(url=reverse_lazy("hello")), name="home"),
]
