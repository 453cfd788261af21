"""The WHIP/WHEP HTTP endpoints (RFC 9725 §4): ``POST /whip/{room}``, ``POST /whep/{room}[/{participant}]``,
``PATCH``/``DELETE`` on the session resource ``/{whip,whep}/{room}/sessions/{id}``, ``OPTIONS`` everywhere.

Bodies are capped like the admin API's (``Content-Length`` checked first, then while streaming, within the
header timeout); errors carry a short ``application/problem+json`` body (RFC 9457). CORS allows any origin:
credentials travel in ``Authorization`` (never cookies), so a browser WHIP client on another origin is the
point, and the preflight grants nothing a script could not already send.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomcast.whip.sdpfrag import SdpFragError, parse_sdpfrag
from roomcast.whip.service import Kind, WhipError, WhipResource, WhipService

MAX_SDP = 64 * 1024
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
# [{"urls": [...], "username": ..., "credential": ...}] for one identity (minted TURN credentials)
IceServers = Callable[[str], Sequence[Mapping[str, object]]]

_RESOURCE_METHODS = ["PATCH", "DELETE", "OPTIONS"]
_CORS = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "Location, ETag, Link, Accept-Patch, Retry-After",
}


def problem(error: WhipError) -> Response:
    body = json.dumps({"type": "about:blank", "title": error.code, "status": error.status, "detail": error.message})
    headers = dict(_CORS)
    if error.status == 401:
        headers["www-authenticate"] = 'Bearer realm="roomcast"'
    if error.retry_after is not None:
        headers["retry-after"] = str(error.retry_after)
    if error.status in (408, 413):
        headers["connection"] = "close"  # do not read (or keep) the rest of the upload
    return Response(body, status_code=error.status, media_type="application/problem+json", headers=headers)


def link_headers(servers: Sequence[Mapping[str, object]]) -> list[str]:
    """RFC 9725 §4.6: one ``Link: <url>; rel="ice-server"`` per URL, with its credentials."""
    links = []
    for server in servers:
        urls = server.get("urls", [])
        for url in urls if isinstance(urls, list) else [urls]:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username") is not None:
                link += f'; username="{server["username"]}"; credential="{server["credential"]}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


class WhipHttp:
    def __init__(self, service: WhipService, *, body_timeout: float, ice_servers: IceServers | None = None) -> None:
        self.service = service
        self.body_timeout = body_timeout
        self.ice_servers: IceServers = ice_servers or (lambda identity: [])

    def routes(self) -> list[Route]:
        return [
            Route("/whip/{room}", self._guard(self.post_whip), methods=["POST", "OPTIONS"]),
            Route("/whep/{room}", self._guard(self.post_whep), methods=["POST", "OPTIONS"]),
            Route("/whep/{room}/{participant}", self._guard(self.post_whep), methods=["POST", "OPTIONS"]),
            Route("/whip/{room}/sessions/{id}", self._guard(self.whip_resource), methods=_RESOURCE_METHODS),
            Route("/whep/{room}/sessions/{id}", self._guard(self.whep_resource), methods=_RESOURCE_METHODS),
        ]

    def _guard(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.method == "OPTIONS":
                return self._options(request)
            try:
                return await handler(request)
            except WhipError as exc:
                return problem(exc)

        return endpoint

    def _options(self, request: Request) -> Response:
        """CORS preflight (and RFC 9725 §4.2's OPTIONS): what may be sent here."""
        resource = "id" in request.path_params
        methods = "PATCH, DELETE, OPTIONS" if resource else "POST, OPTIONS"
        headers = {
            **_CORS,
            "access-control-allow-methods": methods,
            "access-control-allow-headers": "Authorization, Content-Type, If-Match",
            "access-control-max-age": "600",
            "allow": methods,
        }
        if resource:
            headers["accept-patch"] = SDPFRAG
        else:
            headers["accept-post"] = SDP
        return Response(status_code=204, headers=headers)

    async def post_whip(self, request: Request) -> Response:
        return await self._post(request, "whip")

    async def post_whep(self, request: Request) -> Response:
        return await self._post(request, "whep")

    async def _post(self, request: Request, kind: Kind) -> Response:
        host = request.client.host if request.client else ""
        self.service.admit(host)
        _content_type(request, SDP)
        sdp = await self._body(request)
        room = request.path_params["room"]
        created = self.service.create(
            kind, request.headers.get("authorization", ""), room, sdp, host, request.path_params.get("participant")
        )
        resource = created.resource
        location = f"/{kind}/{quote(room, safe='')}/sessions/{resource.id}"
        headers = {**_CORS, "location": location, "etag": resource.etag, "accept-patch": SDPFRAG}
        response = Response(created.answer, status_code=201, media_type=SDP, headers=headers)
        for link in link_headers(self.ice_servers(resource.participant.identity)):
            response.headers.append("link", link)
        return response

    async def whip_resource(self, request: Request) -> Response:
        return await self._resource(request, "whip")

    async def whep_resource(self, request: Request) -> Response:
        return await self._resource(request, "whep")

    async def _resource(self, request: Request, kind: Kind) -> Response:
        resource = self.service.find(request.path_params["id"], request.headers.get("authorization", ""), kind)
        if request.path_params["room"] != resource.room.name:
            raise WhipError(404, "unknown_session", "no such session (it ended, or never existed)")
        if request.method == "DELETE":
            self.service.delete(resource)
            return Response(status_code=200, headers=_CORS)
        return await self._patch(request, resource)

    async def _patch(self, request: Request, resource: WhipResource) -> Response:
        _content_type(request, SDPFRAG)
        try:
            frag = parse_sdpfrag(await self._body(request))
        except SdpFragError as exc:
            raise WhipError(400, "invalid_sdpfrag", str(exc)) from None
        result = self.service.patch(resource, frag, request.headers.get("if-match"))
        if result is None:
            return Response(status_code=204, headers=_CORS)
        body, etag = result
        return Response(body, status_code=200, media_type=SDPFRAG, headers={**_CORS, "etag": etag})

    async def _body(self, request: Request) -> str:
        too_large = WhipError(413, "body_too_large", f"request body over {MAX_SDP} bytes")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_SDP):
            raise too_large
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):  # a trickled body holds a socket and a task
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_SDP:
                        raise too_large
        except TimeoutError:
            raise WhipError(408, "body_timeout", f"request body not received within {self.body_timeout:g}s") from None
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise WhipError(400, "invalid_sdp", "the body is not UTF-8 text") from None


def _content_type(request: Request, wanted: str) -> None:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != wanted:
        raise WhipError(415, "unsupported_media_type", f"send the body as Content-Type: {wanted}")
