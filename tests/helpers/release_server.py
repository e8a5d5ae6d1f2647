"""A loopback HTTP server standing in for the publishers' download hosts (release entries load through
``ZOO_MIRROR=http://127.0.0.1:PORT``, which keeps the publisher's URL path).

It serves files by path with ``Range`` support, counts the requests for each path, redirects where told, answers
404 for anything else, and can misbehave on purpose: drop the connection after N bytes of a file, or answer a
given status to every request for a while.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple


class ReleaseServer:
    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.redirects: Dict[str, str] = {}
        self.requests: List[Tuple[str, Optional[str]]] = []  # (path, Range header)
        self.drop_after: Optional[int] = None  # the next full GET sends this many bytes, then closes
        self.status: Optional[int] = None      # every request is answered with this status while it is set
        self.delay_s = 0.0                     # seconds to sleep before answering (two loaders meet in the lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                if server.delay_s:
                    threading.Event().wait(server.delay_s)
                if server.status is not None:
                    self.send_error(server.status)
                    return
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][len("bytes="):].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.drop_after is not None and start == 0:
                    cut, server.drop_after = server.drop_after, None
                    server.status = 503  # the retries within the same call fail too: the next call resumes
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gets(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
