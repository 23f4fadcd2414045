"""The page served by uvicorn on a background thread: for notebooks, tests and benchmarks.

`kanime serve` blocks until it is stopped; `BackgroundServer` runs the same uvicorn server
on a thread of the current process and stops it when its `with` block ends.
"""

from __future__ import annotations

import socket
import threading
import time


class BackgroundServer:
    """Runs an ASGI app with uvicorn on a daemon thread while the `with` block runs.

    Args:
        app: the ASGI app, e.g. `kanime.serve.app.create_app(generator)`.
        host: the address to listen on.
        port: the port; 0 picks a free one (see `url`).
        start_timeout: seconds to wait for the app to start (it warms the model up).

    Examples:
        >>> import json, urllib.request
        >>> from kanime.inference import CharacterGenerator
        >>> from kanime.models import Generator
        >>> from kanime.serve.app import create_app
        >>> model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
        ...                   upsample_channels=16)
        >>> with BackgroundServer(create_app(CharacterGenerator(model))) as server:
        ...     with urllib.request.urlopen(server.url + "api/vocabulary") as answer:
        ...         json.load(answer)["resolution"]
        32
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 300):
        self.app = app
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        """The server's base URL, ending in `/`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def __enter__(self) -> BackgroundServer:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                raise RuntimeError(f"The server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self._server.should_exit = True
        self._thread.join(timeout=30)


__all__ = ["BackgroundServer"]
