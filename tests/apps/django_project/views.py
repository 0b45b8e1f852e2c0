"""Views doing real Django work: CSRF-checked forms, uploads, streaming, JSON, cookies."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

FORM_PAGE = """<!doctype html>
<title>Contact</title>
<form method="post" action="{}">
  <input type="hidden" name="csrfmiddlewaretoken" value="{}">
  <input name="name"> <input name="topic"> <input name="topic">
  <textarea name="message"></textarea>
  <button>Send</button>
</form>
"""


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"Hello, {request.GET.get('name', 'world')}!", content_type="text/plain")


def pid(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid(), "loaded_in": settings.LOADED_IN_PID})


def form(request: HttpRequest) -> HttpResponse:
    """GET renders the form with a CSRF token (and sets the cookie); POST echoes the fields."""
    if request.method == "GET":
        return HttpResponse(format_html(FORM_PAGE, reverse("form"), get_token(request)))
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    fields = {key: request.POST.getlist(key) for key in request.POST}
    fields.pop("csrfmiddlewaretoken", None)
    return JsonResponse({"fields": fields})


def upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    stored = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in stored.chunks():
        digest.update(chunk)
    fields = {key: request.POST[key] for key in request.POST if key != "csrfmiddlewaretoken"}
    return JsonResponse(
        {
            "filename": stored.name,
            "content_type": stored.content_type,
            "size": stored.size,
            "sha256": digest.hexdigest(),
            "on_disk": hasattr(stored, "temporary_file_path"),
            "fields": fields,
        }
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("count", "10"))
    size = int(request.GET.get("size", "100"))

    def generate() -> Iterator[str]:
        for i in range(count):
            yield f"{i:06d}:" + "x" * size + "\n"

    return StreamingHttpResponse(generate(), content_type="text/plain")


def large_json(request: HttpRequest) -> JsonResponse:
    items = [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"]} for i in range(20_000)]
    return JsonResponse({"count": len(items), "items": items})


def cookie_set(request: HttpRequest) -> HttpResponse:
    resp = HttpResponse("cookie set", content_type="text/plain")
    resp.set_cookie("flavour", request.GET.get("value", "oatmeal"), httponly=True, samesite="Lax")
    return resp


def cookie_get(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"flavour": request.COOKIES.get("flavour")})


def redirect_to_form(request: HttpRequest) -> HttpResponse:
    return redirect("form")
