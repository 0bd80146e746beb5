"""A real HTTP server on 127.0.0.1 (no internet) for the download tests: ``server`` serves the files
under ``server.root`` at ``server.url``, honours ``Range: bytes=N-`` (resumes) unless
``server.ignore_range``, and logs every request in ``server.log``."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.root``; honours ``Range: bytes=N-`` unless ``server.ignore_range``; logs every request."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and not self.server.ignore_range else 0
        body = data[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.server.log.append((self.path, rng, len(body)))  # before the body: the client may assert as soon as it has it
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.root, httpd.ignore_range, httpd.log = root, False, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
