"""The HTTP API and web pages over a facewire server: a FastAPI app that is itself a ZeroMQ client.

Each call borrows one of `Gateway.connections` Clients (one REQ socket each, with the Client's
lazy-pirate retries and CURVE keys) in a worker thread, so that as many requests are in flight
to the server as it has workers. Uploads are decoded with faces/images.py under the server's
pixel limit, then sent raw; nothing here finds or names a face.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facewire import __version__
from facewire.client.client import Client, ServerError
from facewire.client.pipeline import ServerUnavailable
from facewire.client.video import KEYFRAME
from facewire.config import Gateway
from facewire.faces import images
from facewire.wire import protocol
from facewire.wire.keys import ClientKeys, NoKeys
from facewire.wire.ping import ping_reply

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/gallery": "gallery.html", "/live": "live.html"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "connect-src 'self' ws: wss:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
HEALTH_TIMEOUT_MS = 2000
RESULT_HEADER = "X-Facewire-Result"
"""/v1/annotate's faces and timings, as ASCII JSON, beside the JPEG."""
LIVE_SUBPROTOCOL = "facewire"
TOKEN_SUBPROTOCOL = "bearer."
"""A browser cannot set headers on a WebSocket: it offers ["facewire", "bearer.TOKEN"] instead."""

SERVER_ERROR_STATUS = {"bad_image": 400, "bad_name": 400, "bad_photo": 400, "bad_option": 400,
                       "forbidden": 403, "not_found": 404, "too_large": 413}
"""HTTP status of each error code a server reply may carry; any other code is the gateway's fault (502)."""
HTTP_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                    413: "too_large"}

T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: bad_image, bad_name, bad_photo, forbidden, not_found, too_large, "
                                  "unauthorized, invalid_request, unavailable, ...")
    message: str = Field(description="for people")


class ErrorBody(BaseModel):
    error: ErrorDetail


class FaceQuality(BaseModel):
    width: int = Field(description="the face's width in pixels")
    sharpness: float = Field(description="variance of the Laplacian of the face resampled to 64 px: low when blurred")
    yaw: float | None = Field(description="left/right turn in degrees (0 frontal, about +-90 in profile; mtcnn only)")
    roll: float | None = Field(description="in-plane tilt of the eye line in degrees (mtcnn only)")


class Face(BaseModel):
    name: str = Field(description='the nearest known person, if the server\'s decision rule names the face, else '
                                  '"Unknown"')
    distance: float | None = Field(description="distance to the nearest gallery photo (null: empty gallery)")
    confidence: float = Field(description="1 - distance / (2 x tolerance), clipped to [0, 1]: "
                                          "0.5 exactly at the tolerance (the server's own figure)")
    box: tuple[int, int, int, int] = Field(description="[top, right, bottom, left] in the uploaded image's pixels")
    score: float | None = Field(None, description="the detector's confidence in the face: a probability for mtcnn, "
                                                  "a margin (higher is surer) for hog and cnn")
    landmarks: list[tuple[float, float]] = Field([], description="[x, y] of the left eye, right eye, nose, left and "
                                                                 "right mouth corner, as seen in the image (mtcnn "
                                                                 "only; empty for hog and cnn)")
    margin: float | None = Field(None, description="the nearest other person's distance minus the nearest's "
                                                   "(null: fewer than two people, or named by a vote or a track)")
    decision: str | None = Field(None, description='what named or refused the face: "within tolerance", "margin", '
                                                   '"ambiguous", "beyond ceiling", "beyond tolerance", '
                                                   '"empty gallery", "vote" or "tracked"')
    quality: FaceQuality | None = Field(None, description="the face's size, sharpness and pose")


class Recognized(BaseModel):
    faces: list[Face]
    timings_ms: dict[str, float] = Field(description="the server's (detect, encode, match, total) and the "
                                                     "gateway's own, upload decoding and round trip included")


class Verified(BaseModel):
    same: bool = Field(description="whether the faces are one person's: the distance is within the threshold")
    distance: float = Field(description="between the two faces, or from the face to the nearest photo of `name`")
    threshold: float = Field(description="the tolerance the distance was judged by: the request's, else the server's")
    decision: str = Field(description='"same" or "different"')
    faces: list[tuple[int, int, int, int]] = Field(description="the face box of `image`, then of `image2`: "
                                                               "[top, right, bottom, left] in that upload's pixels")


class People(BaseModel):
    people: dict[str, int] = Field(description="each person's name and photo count")


class Enrolled(BaseModel):
    name: str
    photos: int = Field(description="the person's photos now")


class Removed(BaseModel):
    name: str
    removed: int = Field(description="photos removed")


class Health(BaseModel):
    status: str
    server: dict[str, Any] = Field(description="the server's answer to a ping: version, people, photos, and the "
                                               "detector it runs (mtcnn, hog or cnn): the gateway detects nothing itself")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's description of the error replies a route may give."""
    return {status: {"model": ErrorBody} for status in statuses}


class ApiError(Exception):
    """An error reply: its HTTP status and {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class UploadTooLarge(HTTPException):
    """A request body over the upload limit (an HTTPException, so that form parsing lets it through)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the upload is over the limit of {limit} bytes")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers)


class UploadLimit:
    """ASGI middleware: refuses a body over `max_bytes`, by its Content-Length before reading it and
    by counting its bytes as they come (a chunked body, or a Content-Length that lies)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, "too_large", UploadTooLarge(self.max_bytes).detail,
                                      {"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


class ClientPool:
    """`size` Clients of one server, each lent to one call at a time in a worker thread (a Client is
    not thread-safe); the limiter lets no more calls run than there are Clients."""

    def __init__(self, gateway: Gateway, keys: ClientKeys | NoKeys):
        self.free: queue.SimpleQueue[Client] = queue.SimpleQueue()
        for _ in range(gateway.connections):
            self.free.put(Client(gateway.server, gateway.timeout, gateway.retries, "raw", keys))
        self.size = gateway.connections
        self.limiter = anyio.CapacityLimiter(gateway.connections)

    async def run(self, work: Callable[[Client], T]) -> T:
        """`work(client)` in a worker thread, with a Client of its own for the duration."""
        return await anyio.to_thread.run_sync(self._lend, work, limiter=self.limiter)

    def _lend(self, work: Callable[[Client], T]) -> T:
        client = self.free.get()
        try:
            return work(client)
        finally:
            self.free.put(client)

    def close(self) -> None:
        for _ in range(self.size):
            self.free.get().close()


def face_json(face: protocol.FaceResult) -> dict[str, Any]:
    """What the API shows of a face (not its track token, which only this gateway hands back)."""
    return {"name": face.name, "distance": face.distance, "confidence": face.confidence, "box": list(face.box),
            "score": face.score, "landmarks": [list(point) for point in face.landmarks], "margin": face.margin,
            "decision": face.decision, "quality": face.quality}


def create_app(gateway: Gateway, keys: ClientKeys | NoKeys, token: str | None) -> FastAPI:
    """The gateway's app: the API under /v1, /healthz, the pages, and JSON errors for everything.

    `token`: the bearer token every API call (and the live WebSocket) must carry, or None for none."""
    max_pixels = gateway.limits.max_pixels
    max_bytes = gateway.limits.max_frame_bytes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = ClientPool(gateway, keys)
        log.info("HTTP gateway for %s: %d connections, uploads up to %d bytes, %s", gateway.server,
                 gateway.connections, max_bytes, "bearer token required" if token else "no token")
        yield
        app.state.pool.close()

    app = FastAPI(title="facewire", version=__version__, lifespan=lifespan,
                  description="Face recognition over HTTP: a gateway to a facewire ZeroMQ server. Errors are "
                              '`{"error": {"code", "message"}}`. With a token, every call under /v1 and '
                              "/healthz needs `Authorization: Bearer TOKEN`.")
    install_error_handlers(app)
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    if gateway.cors:
        app.add_middleware(CORSMiddleware, allow_origins=list(gateway.cors), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization"], expose_headers=[RESULT_HEADER])

    bearer = HTTPBearer(auto_error=False, description="the gateway's token, when it has one (--token-file)")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is not None and (credentials is None or not same_token(credentials.credentials, token)):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    api = APIRouter(dependencies=[Depends(authorised)])

    def pool(connection: HTTPConnection) -> ClientPool:
        return connection.app.state.pool

    @api.post("/v1/recognize", response_model=Recognized, tags=["faces"], responses=errors(400, 401, 413, 503))
    async def recognize(request: Request, image: UploadFile = File(description="JPEG, PNG, WebP or BMP"),
                        tolerance: float | None = Query(None, ge=0, le=2,
                                                        description="largest distance named outright (default: "
                                                                    "the server's; its ceiling moves with it)")
                        ) -> dict[str, Any]:
        """Find and name every face in the uploaded image."""
        started, data = time.perf_counter(), await image.read()
        result = await pool(request).run(
            lambda client: client.recognize(images.decode_upload(data, max_pixels), False, tolerance))
        return {"faces": [face_json(face) for face in result.faces],
                "timings_ms": with_gateway_time(result.timings_ms, started)}

    @api.post("/v1/annotate", tags=["faces"], response_class=Response, responses={
        200: {"content": {"image/jpeg": {}}, "description": f"the image with boxes and names; the {RESULT_HEADER} "
                                                            "header holds /v1/recognize's reply as JSON"},
        **errors(400, 401, 413, 503)})
    async def annotate(request: Request, image: UploadFile = File(description="JPEG, PNG, WebP or BMP"),
                       tolerance: float | None = Query(None, ge=0, le=2)) -> Response:
        """The uploaded image with a box and a name drawn on every face, as a JPEG."""
        started, data = time.perf_counter(), await image.read()

        def work(client: Client) -> tuple[bytes, dict[str, Any]]:
            result = client.recognize(images.decode_upload(data, max_pixels), True, tolerance)
            return images.encode_compressed(result.image, "jpeg"), {
                "faces": [face_json(face) for face in result.faces], "timings_ms": result.timings_ms}

        jpeg, body = await pool(request).run(work)
        body["timings_ms"] = with_gateway_time(body["timings_ms"], started)
        return Response(jpeg, media_type="image/jpeg", headers={RESULT_HEADER: json.dumps(body)})

    @api.post("/v1/verify", response_model=Verified, tags=["faces"], responses=errors(400, 401, 404, 413, 503))
    async def verify(request: Request, image: UploadFile = File(description="a photo of exactly one face"),
                     image2: UploadFile | None = File(None, description="a second photo of exactly one face"),
                     name: str | None = Form(None, description="a person of the gallery, instead of image2"),
                     tolerance: float | None = Query(None, ge=0, le=2, description="largest distance still the same "
                                                                                   "person (default: the server's)")
                     ) -> dict[str, Any]:
        """Whether the face of `image` is the face of `image2`, or of the gallery's person `name` (the nearest of
        their photos): 400 for an image without exactly one face, 404 for an unknown name."""
        if (image2 is None) == (name is None):
            raise ApiError(422, "invalid_request", "give either image2 or name")
        first, second = await image.read(), None if image2 is None else await image2.read()

        def work(client: Client) -> dict[str, Any]:
            other = None if second is None else decode_field("image2", second, max_pixels)
            return client.verify(decode_field("image", first, max_pixels), other, name, tolerance)

        body = await pool(request).run(work)
        return {key: body[key] for key in ("same", "distance", "threshold", "decision", "faces")}

    @api.get("/v1/people", response_model=People, tags=["gallery"], responses=errors(401, 503))
    async def people(request: Request) -> dict[str, Any]:
        """Everyone in the gallery, with their photo counts."""
        body = await pool(request).run(lambda client: client.gallery_op("list"))
        return {"people": body["people"]}

    @api.get("/v1/people/{name}/photo", tags=["gallery"], response_class=Response, responses={
        200: {"content": {"image/jpeg": {}}, "description": "a thumbnail of the person's first photo"},
        **errors(400, 401, 404, 503)})
    async def photo(request: Request, name: str) -> Response:
        """A thumbnail (at most 160 px a side) of one of `name`'s photos, as a JPEG."""
        image = await pool(request).run(lambda client: client.photo(name))
        return Response(images.encode_compressed(image, "jpeg"), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @api.post("/v1/people/{name:path}", response_model=Enrolled, status_code=201, tags=["gallery"],
              responses=errors(400, 401, 413, 503))
    async def enrol(request: Request, name: str, image: UploadFile = File(description="a photo of exactly one face")
                    ) -> dict[str, Any]:
        """Add a photo of `name` to the gallery (the server refuses a bad name, or a photo without exactly one face)."""
        data = await image.read()
        body = await pool(request).run(lambda client: client.enroll(name, images.decode_upload(data, max_pixels)))
        return {"name": body["name"], "photos": body["photos"]}

    @api.delete("/v1/people/{name:path}", response_model=Removed, tags=["gallery"], responses=errors(400, 401, 404, 503))
    async def remove(request: Request, name: str) -> dict[str, Any]:
        """Remove `name` and every photo of them from the gallery."""
        body = await pool(request).run(lambda client: client.gallery_op("remove", name=name))
        return {"name": body["name"], "removed": body["removed"]}

    @api.get("/healthz", response_model=Health, tags=["health"], responses=errors(401, 503))
    async def healthz() -> dict[str, Any]:
        """200 with the server's status when it answers a ping within 2 s; 503 when it does not."""
        reply = await anyio.to_thread.run_sync(ping_reply, gateway.server, HEALTH_TIMEOUT_MS, keys.secure)
        if reply is None:
            raise ServerUnavailable(f"{gateway.server} did not answer a ping in {HEALTH_TIMEOUT_MS / 1000:g} s")
        return {"status": "ok", "server": {key: reply[key] for key in ("version", "people", "photos", "detector")
                                            if key in reply}}

    app.include_router(api)

    @app.websocket("/v1/live")
    async def live(socket: WebSocket, tolerance: float | None = Query(None, ge=0, le=2)) -> None:
        """Binary messages in (JPEG frames), one JSON message out per frame: {"faces", "timings_ms"} or
        {"error"}. The face's track tokens stay here, so that the server reuses the identities it can track."""
        offered = socket.scope.get("subprotocols", [])
        if token is not None and not websocket_token_ok(socket, offered, token):
            await socket.close(code=1008)  # before accept: the handshake gets 403
            return
        await socket.accept(subprotocol=LIVE_SUBPROTOCOL if LIVE_SUBPROTOCOL in offered else None)
        track: list[str] = []
        frame = 0
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is None:
                await socket.send_json({"error": {"code": "bad_request", "message": "send each frame as binary JPEG"}})
                continue
            started, data = time.perf_counter(), message["bytes"]
            hints = track if frame % KEYFRAME else []
            frame += 1
            try:
                faces, timings = await pool(socket).run(
                    lambda client: recognize_frame(client, images.decode_upload(data, max_pixels), hints, tolerance))
            except (ServerError, ServerUnavailable, images.ImageError, protocol.ProtocolError) as exc:
                _, code, text = error_of(exc)
                await socket.send_json({"error": {"code": code, "message": text}})
                continue
            track = [face.track for face in faces if face.track][:protocol.MAX_TRACKED]
            await socket.send_json({"faces": [face_json(face) for face in faces],
                                    "timings_ms": with_gateway_time(timings, started)})

    for path, page in PAGES.items():
        app.add_api_route(path, page_route(page), include_in_schema=False, response_class=FileResponse)
    app.add_api_route("/static/{name}", static_file, include_in_schema=False, response_class=FileResponse)
    return app


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison, so that the time taken says nothing about the token."""
    return hmac.compare_digest(given.encode(), token.encode())


def websocket_token_ok(socket: WebSocket, offered: list[str], token: str) -> bool:
    """An `Authorization: Bearer` header, or (from a browser) a "bearer.TOKEN" subprotocol."""
    header = socket.headers.get("authorization", "")
    candidates = [header[7:]] if header[:7].lower() == "bearer " else []
    candidates += [item[len(TOKEN_SUBPROTOCOL):] for item in offered if item.startswith(TOKEN_SUBPROTOCOL)]
    return any(same_token(candidate, token) for candidate in candidates)


def decode_field(field: str, data: bytes, max_pixels: int) -> np.ndarray:
    """An uploaded image (faces/images.py's decode_upload); a refusal names its form field ("image2: ...")."""
    try:
        return images.decode_upload(data, max_pixels)
    except images.ImageError as exc:
        raise type(exc)(f"{field}: {exc}") from None


def recognize_frame(client: Client, image: np.ndarray, track: list[str], tolerance: float | None
                    ) -> tuple[list[protocol.FaceResult], dict[str, float]]:
    """One video frame, with the last frame's track tokens and no annotated image."""
    options: dict[str, Any] = {"annotate": False, "track": track}
    if tolerance is not None:
        options["tolerance"] = tolerance
    body, _ = client.call(protocol.pack_request("recognize", image, client.wire, **options))
    return [protocol.FaceResult.from_json(face) for face in body["faces"]], body.get("timings_ms", {})


def with_gateway_time(timings: dict[str, float], started: float) -> dict[str, float]:
    """The server's timings, and the gateway's: from the upload read to the reply, decoding included."""
    return {**timings, "gateway": round((time.perf_counter() - started) * 1000, 2)}


def error_of(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, code, message) of a failure on the way to the server or back."""
    if isinstance(exc, ServerError):
        return SERVER_ERROR_STATUS.get(exc.code, 502), exc.code, str(exc).split(": ", 1)[-1]
    if isinstance(exc, ServerUnavailable):
        return 503, "unavailable", str(exc)
    if isinstance(exc, images.ImageTooLarge):
        return 413, "too_large", str(exc)
    if isinstance(exc, images.ImageError):
        return 400, "bad_image", str(exc)
    return 502, "bad_reply", f"the server's reply was not understood: {exc}"


def install_error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own included, as {"error": {"code", "message"}}; never a traceback."""

    async def known(request: Request, exc: Exception) -> JSONResponse:
        status, code, message = error_of(exc)
        if status >= 500:
            log.warning("%s %s: %s: %s", request.method, request.url.path, code, message)
        return error_response(status, code, message)

    for kind in (ServerError, ServerUnavailable, images.ImageError, protocol.ProtocolError):
        app.add_exception_handler(kind, known)

    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(422, "invalid_request", problems)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "the gateway failed on this request; see its log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


def page_route(page: str) -> Callable[[], FileResponse]:
    def serve_page() -> FileResponse:
        return FileResponse(STATIC / page, headers=PAGE_HEADERS)

    return serve_page


def static_file(name: str) -> FileResponse:
    """A file of static/ (scripts, styles); only names that are there, never a path."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, f"no static file {name}")
    return FileResponse(path, headers=PAGE_HEADERS)
