"""The viewer's web server: read-only, on 127.0.0.1, for whoever holds the URL's token.

A login node is shared, so 127.0.0.1 is not private: every request must carry the token
(:func:`secrets.token_urlsafe`, compared in constant time), as the ``token`` query parameter
or, after a first page, in the cookie set then (HttpOnly, SameSite=Strict); any other gets
403, as does a ``Host`` other than this machine's name (a name elsewhere resolved to it).
Only GET and HEAD are answered. The paths are a fixed set of patterns of numbers (no file
name comes from the request): the page's own files, shipped in ``daskstyle/data/view``;
``status.json``; each level as Deep Zoom (``/level/N.dzi``, tiles ``/level/N_files/Z/X_Y.png``)
or a painting, .tif or .ome.zarr (``/output.dzi``); each level's preview (``/preview/N.png``).
Files are read inside the run directory (or painting) only, never through a symbolic link
(:mod:`daskstyle.frontends.view.reading`), and nothing is written. At most
:data:`TILES_AT_ONCE` tiles are made at once, which with the bounded chunk cache bounds the
memory.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from daskstyle.core.data import DATA_DIR
from daskstyle.core.errors import InputError
from daskstyle.frontends.view import deepzoom
from daskstyle.frontends.view.reading import NotServed
from daskstyle.frontends.view.sources import (
    MOST_HALVED_PIXELS,
    OmeZarrPainting,
    RunDirectory,
    TiffPainting,
    open_source,
)
from daskstyle.frontends.view.status import status

HOST = "127.0.0.1"
LOCAL_NAMES = (HOST, "localhost", "[::1]")  # the names of the Host header answered
PAGE_DIR = DATA_DIR / "view"
TILES_AT_ONCE = 4
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".txt": "text/plain"}  # fmt: skip
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}
_DEEP_ZOOM = re.compile(r"/(level/[1-9][0-9]{0,1}|output)(\.dzi|_files/([0-9]{1,2})/([0-9]{1,6})"
                        r"_([0-9]{1,6})\.png)")  # fmt: skip
_FAILURES = (  # what a request that fails gets: the first that matches
    ((NotServed, deepzoom.NoSuchTile, ValueError, OSError), HTTPStatus.NOT_FOUND, b"not found\n"),
    (OverflowError, HTTPStatus.SERVICE_UNAVAILABLE, b"this level's overview is not written yet\n"),
    (Exception, HTTPStatus.INTERNAL_SERVER_ERROR, b"this file of the run cannot be read\n"),
)
_PREVIEW = re.compile(r"/preview/([1-9][0-9]{0,1})\.png")


def page_files() -> dict[str, Path]:
    """The page's files by the path they are served under (``/static/...``): the regular
    files of ``daskstyle/data/view`` and its ``images`` folder, none through a link."""
    found = {}
    for folder, prefix in ((PAGE_DIR, "/static/"), (PAGE_DIR / "images", "/static/images/")):
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file() and not path.is_symlink() and path.suffix in _TYPES:
                found[prefix + path.name] = path
    found["/"] = PAGE_DIR / "index.html"
    return found


@dataclass
class Viewer:
    """A running server: its address, token and the source it shows."""

    source: RunDirectory | TiffPainting | OmeZarrPainting
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self):
        self.files = page_files()
        self.tiles = threading.BoundedSemaphore(TILES_AT_ONCE)
        try:
            self.server = ThreadingHTTPServer((HOST, self.port), _handler(self))
        except OSError as err:
            raise InputError(f"cannot serve on {HOST}:{self.port} ({err.strerror}): choose "
                             "another port (--port), or 0 for any free one") from None  # fmt: skip
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.cookie = f"daskstyle-view-{self.port}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> Viewer:
        """Serve from a thread of its own (it ends with the process, or :meth:`close`)."""
        threading.Thread(target=self.serve_forever, name="daskstyle-view", daemon=True).start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(viewer: Viewer) -> type[BaseHTTPRequestHandler]:
    """The request handler of ``viewer`` (the server makes one per request)."""
    return type("Handler", (_Handler,), {"viewer": viewer})


class _Handler(BaseHTTPRequestHandler):
    viewer: Viewer
    server_version = "daskstyle-view"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # a page's many tiles over few connections
    disable_nagle_algorithm = True  # headers and body apart must not wait for an ACK

    def log_message(self, format, *args) -> None:  # the command prints its URL, nothing more
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        url = urlsplit(self.path)
        given = parse_qs(url.query).get("token", [None])[0]
        if not (self._host_allowed() and (self._token_matches(given) or self._cookie_matches())):
            return self._send(HTTPStatus.FORBIDDEN, b"a valid token is needed\n", "text/plain",
                              body=body)  # fmt: skip
        set_cookie = given is not None
        try:
            status_, content, kind = self._route(url.path)
        except Exception as err:  # one line to the browser, no traceback on the terminal
            status_, content = next((code, text) for kinds, code, text in _FAILURES
                                    if isinstance(err, kinds))  # fmt: skip
            kind = "text/plain"
        self._send(status_, content, kind, body=body, set_cookie=set_cookie)

    def _host_allowed(self) -> bool:
        """Whether the page was asked for by this machine's name (any port: a forwarded one),
        not by a name elsewhere that resolves here."""
        host = self.headers.get("Host", "")
        return re.sub(r":[0-9]+$", "", host) in LOCAL_NAMES

    def _token_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.viewer.token.encode())

    def _cookie_matches(self) -> bool:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = cookie.get(self.viewer.cookie)
        return morsel is not None and self._token_matches(morsel.value)

    def _route(self, path: str) -> tuple[HTTPStatus, bytes, str]:
        viewer, source = self.viewer, self.viewer.source
        if path in viewer.files:
            file = viewer.files[path]
            return HTTPStatus.OK, file.read_bytes(), _TYPES[file.suffix]
        if path == "/status.json":
            return HTTPStatus.OK, json.dumps(status(source)).encode(), "application/json"
        if (found := _PREVIEW.fullmatch(path)) and isinstance(source, RunDirectory):
            return HTTPStatus.OK, source.preview(int(found[1])), "image/png"
        found = _DEEP_ZOOM.fullmatch(path)
        if found is None or found[1] not in source.image_names():
            raise NotServed(path)
        if found[2] == ".dzi":
            shape = source.pyramid(found[1])[0].levels[0].shape
            return HTTPStatus.OK, deepzoom.descriptor(shape), "application/xml"
        z, x, y = int(found[3]), int(found[4]), int(found[5])
        with viewer.tiles:
            return HTTPStatus.OK, self._tile(found[1], z, x, y), "image/png"

    def _tile(self, name: str, z: int, x: int, y: int) -> bytes:
        """The PNG of a tile; read again once where the run changed the state meanwhile (a
        chunk overwritten or deleted as it was read)."""
        source = self.viewer.source
        try:
            pixels = deepzoom.tile(source.pyramid(name)[0], z, x, y, MOST_HALVED_PIXELS)
        except (NotServed, ValueError):
            pixels = deepzoom.tile(source.pyramid(name)[0], z, x, y, MOST_HALVED_PIXELS)
        return deepzoom.png(pixels)

    def _send(self, code: HTTPStatus, content: bytes, kind: str, *, body: bool,
              set_cookie: bool = False) -> None:  # fmt: skip
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        if set_cookie and code != HTTPStatus.FORBIDDEN:
            self.send_header("Set-Cookie", f"{self.viewer.cookie}={self.viewer.token}; "
                                           "HttpOnly; SameSite=Strict; Path=/")  # fmt: skip
        self.end_headers()
        if body:
            self.wfile.write(content)


@contextlib.contextmanager
def beside_run(workdir: Path, wanted: bool) -> Iterator[Viewer | None]:
    """A viewer of the run directory ``workdir`` (whose run may not have begun) while the
    block runs, where ``wanted``; else None."""
    if not wanted:
        yield None
        return
    viewer = Viewer(open_source(workdir, waiting=True)).start()
    try:
        yield viewer
    finally:
        viewer.close()
