"""HTTP routes of the Channels example: the page and the ticket endpoint."""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from wsguard.tickets import mint

PAGE = """<!doctype html>
<meta charset="utf-8"><title>wsguard + Django Channels</title>
<pre id="log"></pre>
<script type="module">
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const {ticket} = await (await fetch("/ticket/", {method: "POST"})).json();
const ws = new WebSocket(`ws://${location.host}/ws/?ticket=${encodeURIComponent(ticket)}`);
ws.onopen = () => ws.send("hello");
ws.onmessage = (event) => log(event.data);
ws.onclose = (event) => log(`closed ${event.code}`);
</script>
"""


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


# A real app mints for its logged-in user behind its session and CSRF protection; the ticket is
# bound to the page's origin, here this project's own address.
@csrf_exempt
@require_POST
def ticket(request: HttpRequest) -> JsonResponse:
    origin = f"{request.scheme}://{request.get_host()}"
    return JsonResponse({"ticket": mint(f"guest-{secrets.token_hex(4)}", origin)})


urlpatterns = [path("", index), path("ticket/", ticket)]
