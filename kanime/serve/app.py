"""The web page's ASGI app: the page, its static files and the JSON API.

Routes:

- `GET /`: the page (`static/index.html`); `GET /static/...`: files of the `static/` folder
  beside this module, and nothing outside it.
- `GET /api/vocabulary`: the generator's tags, the page's controls and the request limits.
- `POST /api/generate`: images from seeds, noise and tag options (see `kanime.serve.schema`).
- `POST /api/interpolate`: the frames of a transition between two characters.

Bodies must be `application/json` of at most `MAX_BODY_BYTES`. A bad request gets a 4xx
answer `{"error": message}`. The model runs on one worker thread, off the event loop, so
requests from many clients queue for it while the server keeps answering.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kanime.inference import CharacterGenerator
from kanime.interpolation import transition
from kanime.serve import schema
from kanime.serve.options import controls

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 1 << 20
"""The largest request body accepted (1 MiB); a larger one gets 413."""

HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}

log = logging.getLogger("kanime.serve")


class Images:
    """Runs a `CharacterGenerator` on one worker thread and encodes its images as PNG.

    Keras models are not called from two threads at once: every call goes through the one
    worker, in arrival order. (`CharacterGenerator` pads batches to a power of two, so that
    only a few batch shapes are ever compiled.)

    Args:
        characters: the generator and its vocabulary.

    Examples:
        >>> import asyncio
        >>> from kanime.models import Generator
        >>> model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
        ...                   upsample_channels=16)
        >>> images = Images(CharacterGenerator(model))
        >>> z, tags = np.zeros((2, 8), "float32"), np.zeros((2, 34), "float32")
        >>> pngs, ms = asyncio.run(images.png(z, tags))
        >>> len(pngs), pngs[0].startswith("data:image/png;base64,")
        (2, True)
        >>> images.close()
    """

    def __init__(self, characters: CharacterGenerator):
        self.characters = characters
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="kanime-generate")

    def _generate(self, z: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        images = self.characters(z, tags)
        return images, (time.perf_counter() - start) * 1000.0

    async def png(self, z: np.ndarray, tags: np.ndarray) -> tuple[list[str], float]:
        """PNG data URLs of the images of noise `z` and tags, and the model's time in ms."""
        loop = asyncio.get_running_loop()
        images, ms = await loop.run_in_executor(self._worker, self._generate, z, tags)
        return await run_in_threadpool(lambda: [png_data_url(x) for x in images]), ms

    def warm_up(self):
        """Calls the model once per small batch size, so the first request is not slow."""
        d, t = self.characters.latent_dim, len(self.characters.vocabulary)
        for n in (1, 2):
            self._worker.submit(self._generate, np.zeros((n, d)), np.zeros((n, t))).result()

    def close(self):
        self._worker.shutdown(wait=True)


def png_data_url(image: np.ndarray) -> str:
    """A `data:image/png;base64,...` URL of an RGB uint8 image."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG image.")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def create_app(generator, *, warm_up: bool = True) -> Starlette:
    """The Starlette app serving the page and the API for one generator.

    Args:
        generator: a `CharacterGenerator`, a run folder or a `generator.keras` file.
        warm_up: call the model once at start-up, so the first request is not slow.

    Examples:
        >>> from starlette.testclient import TestClient
        >>> from kanime.models import Generator
        >>> model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
        ...                   upsample_channels=16)
        >>> with TestClient(create_app(CharacterGenerator(model))) as client:
        ...     answer = client.post("/api/generate", json={"seeds": [5], "tags": ["smile"]})
        ...     bad = client.post("/api/generate", json={"seeds": [-1]})
        >>> first = answer.json()["images"][0]
        >>> answer.status_code, first["seed"], first["tags"]
        (200, 5, ['smile'])
        >>> bad.status_code, bad.json()["error"]
        (400, 'seeds[0] (a seed) must be an integer in [0, 9007199254740991]. Received: -1')
    """
    characters = (
        generator
        if isinstance(generator, CharacterGenerator)
        else CharacterGenerator.load(generator)
    )
    images = Images(characters)
    vocabulary = characters.vocabulary

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def describe(request: Request):
        return JSONResponse(
            {
                "resolution": characters.resolution,
                "latent_dim": characters.latent_dim,
                "tags": list(vocabulary.names),
                "groups": [
                    {"name": g.name, "exclusive": g.exclusive, "tags": _group_tags(vocabulary, g)}
                    for g in vocabulary.groups
                ],
                "controls": controls(vocabulary),
                "limits": {
                    "max_images": schema.MAX_IMAGES,
                    "max_frames": schema.MAX_FRAMES,
                    "max_seed": schema.MAX_SEED,
                    "max_noise": schema.MAX_NOISE,
                    "max_body_bytes": MAX_BODY_BYTES,
                },
            }
        )

    async def generate(request: Request):
        body = await _read_json(request)
        asked = schema.parse_generate(body, vocabulary, characters.latent_dim)
        n = len(asked.seeds)
        if asked.noise is not None:
            z, noise_seeds = asked.noise, [None] * n
        elif asked.noise_seed is not None:
            z = np.repeat(characters.noise([asked.noise_seed]), n, axis=0)
            noise_seeds = [asked.noise_seed] * n
        else:
            z, noise_seeds = characters.noise(asked.seeds), list(asked.seeds)
        tags = np.stack([asked.options.resolve(s) for s in asked.seeds])
        pngs, ms = await images.png(z, tags)
        return _json(
            {
                "resolution": characters.resolution,
                "model_ms": round(ms, 2),
                "images": [
                    {
                        "seed": seed,
                        "noise_seed": noise_seed,
                        "tags": vocabulary.decode(row),
                        "noise": vector.astype("float64").tolist(),
                        "image": png,
                    }
                    for seed, noise_seed, row, vector, png in zip(
                        asked.seeds, noise_seeds, tags, z, pngs
                    )
                ],
            }
        )

    async def interpolate(request: Request):
        body = await _read_json(request)
        asked = schema.parse_interpolate(body, vocabulary, characters.latent_dim)
        ends = []
        for end in (asked.start, asked.end):
            ends.append(end.noise if end.noise is not None else characters.noise([end.seed])[0])
        t, z, tags = transition(*ends, asked.start.tags, asked.end.tags, asked.frames, asked.method)
        pngs, ms = await images.png(z, tags)
        return _json(
            {
                "resolution": characters.resolution,
                "method": asked.method,
                "model_ms": round(ms, 2),
                "frames": [{"t": round(float(x), 6), "image": p} for x, p in zip(t, pngs)],
            }
        )

    @asynccontextmanager
    async def lifespan(app):
        if warm_up:
            await asyncio.get_running_loop().run_in_executor(None, images.warm_up)
        yield
        images.close()

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/vocabulary", describe, methods=["GET"]),
            Route("/api/generate", generate, methods=["POST"]),
            Route("/api/interpolate", interpolate, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={
            schema.RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        middleware=[Middleware(_SecurityHeaders)],
        lifespan=lifespan,
    )
    app.state.characters = characters
    return app


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (`127.0.0.1`, `::1`, `localhost`).

    Examples:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(generator, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
    """Serves the page for `generator` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(generator), host=host, port=port, log_level=log_level)


class _SecurityHeaders:
    """ASGI middleware adding `HEADERS` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        return await self.app(scope, receive, send_with_headers)


async def _read_json(request: Request):
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise schema.RequestError(
            f"The body must be JSON sent as `Content-Type: application/json`. "
            f"Received: {kind or 'no content type'}",
            status=415,
        )
    declared = request.headers.get("content-length", "")
    too_big = f"The body is larger than {MAX_BODY_BYTES} bytes."
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise schema.RequestError(too_big, status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise schema.RequestError(too_big, status=413)
        chunks.append(chunk)
    return schema.parse_json(b"".join(chunks))


def _json(content) -> JSONResponse:
    return JSONResponse(content, headers={"cache-control": "no-store"})


def _group_tags(vocabulary, group) -> list[str]:
    return list(vocabulary.names[vocabulary.group_slice(group.name)])


async def _request_error(request: Request, error: schema.RequestError):
    message = str(error)
    if len(message) > 2000:  # it may quote a long value from the body
        message = message[:2000] + "..."
    return JSONResponse({"error": message}, status_code=error.status)


async def _http_error(request: Request, error: HTTPException):
    message = {404: "Not found.", 405: "Method not allowed."}.get(error.status_code, error.detail)
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


async def _server_error(request: Request, error: Exception):
    log.exception("Unexpected error on %s", request.url.path)
    return JSONResponse({"error": f"Internal error: {type(error).__name__}."}, status_code=500)


__all__ = ["HEADERS", "MAX_BODY_BYTES", "STATIC", "Images", "create_app", "is_loopback", "serve"]
