"""Async views and sync views (Django runs the sync ones in a thread under ASGI) for the routes
every framework app answers. The POST views are CSRF-exempt: they stand for an API."""

from __future__ import annotations

import json
import os

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.asgi_common import chunks, upload_summary


async def json_route(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"framework": "django"})


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"item_id": item_id, "q": request.GET.get("q")})


@csrf_exempt
@require_POST
async def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": json.loads(request.body)})


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    stored = request.FILES["file"]
    data = b"".join(stored.chunks())
    return JsonResponse(upload_summary(stored.name, data, request.POST["field"]))


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    count = int(request.GET.get("count", "3"))
    return StreamingHttpResponse(chunks(count), content_type="text/plain")


def pid(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


async def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom from django")
