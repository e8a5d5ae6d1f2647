"""Loopback servers for hub tests: a STUB of the Hugging Face Hub commit endpoints, and an olah mirror.

``HubStub`` is a loopback STUB, not a Hub implementation. No local server accepts uploads from a Hugging Face
client, so to test code that publishes with ``HfApi.create_repo`` and ``HfApi.upload_folder`` this module answers
only the few HTTP endpoints those two calls use (huggingface_hub talks to it exactly as it talks to the Hub for
these calls) and writes each commit into a local directory hub with ``zoo.pretrained.local_hub.commit_files``. Everything
else gets a 404 and is recorded, so a test notices when huggingface_hub starts asking for something new.

``SilentServer`` accepts connections and never answers (an unreachable Hub that hangs rather than refuses).

``OlahServer`` runs the real olah mirror (``olah-cli``) over such a local hub, so downloads go through
``HF_ENDPOINT`` and ``hf_hub_download`` exactly as they would in an air-gapped deployment.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from zoo.errors import ZooError
from zoo.pretrained import local_hub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """An endpoint that never answers: a loopback socket that accepts connections (the kernel completes them from
    its listen backlog) and never sends a byte, as a black-holed Hub or a hung mirror behaves. Use ``url`` as
    ``HF_ENDPOINT``; ``free_port()``'s port, where nothing listens, is the other kind of unreachable (refused)."""

    def __init__(self) -> None:
        self.url = ""
        self._socket: Optional[socket.socket] = None

    def __enter__(self) -> "SilentServer":
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self._socket.close()


class HubStub:
    """Loopback STUB of the Hub endpoints behind ``create_repo`` and ``upload_folder`` (huggingface_hub 2.4).

    Not a Hub implementation: it answers ``POST /api/repos/create``, ``POST /api/models/ORG/NAME/preupload/main``
    (every file ``regular``, so content travels base64-inline in the commit and no LFS or xet upload happens) and
    ``POST /api/models/ORG/NAME/commit/main``, which it commits into the local directory hub ``root`` (and
    ``HEAD /``, the reachability check ``training publish`` makes before it uploads anything). Every
    request is appended to ``requests`` as ``(method, path)``; those it does not know also go to ``unknown``
    and get a 404.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.url = ""
        self.requests: List[Tuple[str, str]] = []
        self.unknown: List[Tuple[str, str]] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "HubStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stub._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ dispatch

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        self.requests.append((req.command, path))
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            if req.command == "HEAD" and parts == [""]:  # publish's reachability check: any answer will do
                status, answer = 200, {}
            elif req.command == "POST" and parts == ["api", "repos", "create"]:
                status, answer = self._create(json.loads(body))
            elif req.command == "POST" and parts == ["api", "validate-yaml"]:
                status, answer = self._validate_yaml(json.loads(body))
            elif req.command == "POST" and len(parts) == 6 and parts[:2] == ["api", "models"] \
                    and parts[4] in ("preupload", "commit"):
                repo_id, revision = f"{parts[2]}/{parts[3]}", parts[5]
                if revision != local_hub.BRANCH:
                    status, answer = 400, {"error": f"this stub only commits to {local_hub.BRANCH!r}"}
                elif parts[4] == "preupload":
                    status, answer = self._preupload(repo_id, json.loads(body))
                else:
                    status, answer = self._commit(repo_id, body)
            else:
                self.unknown.append((req.command, path))
                status, answer = 404, {"error": f"{req.command} {path} is not stubbed by HubStub"}
        except (ZooError, ValueError, KeyError) as e:
            status, answer = 400, {"error": str(e)}
        data = json.dumps(answer).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)

    # ------------------------------------------------------------------ endpoints

    def _create(self, payload: dict) -> Tuple[int, dict]:
        if payload.get("type", "model") != "model":
            return 400, {"error": "this stub only holds model repositories"}
        if not payload.get("organization"):
            return 400, {"error": "this stub has no user namespace: create ORG/NAME repositories"}
        repo_id = f"{payload['organization']}/{payload.get('name')}"
        git_dir = local_hub.repo_path(self.root, repo_id)
        url = f"{self.url}/{repo_id}"
        if (git_dir / "HEAD").is_file():
            return 409, {"error": "You already created this model repo", "url": url}
        git_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={local_hub.BRANCH}", str(git_dir)],
                       check=True, capture_output=True)
        return 200, {"url": url, "name": repo_id}

    def _validate_yaml(self, payload: dict) -> Tuple[int, dict]:
        """The Hub validates a README.md's metadata before a commit; the stub checks it parses as a model card
        (YAML front matter and model-index, with huggingface_hub's own parser) and has no further rules."""
        from huggingface_hub import ModelCard

        try:
            ModelCard(payload["content"], ignore_metadata_errors=False)
        except Exception as err:  # any parse failure is the card's fault: report it as the Hub would, a 400
            return 400, {"errors": [{"message": str(err)}]}
        return 200, {"errors": [], "warnings": []}

    def _preupload(self, repo_id: str, payload: dict) -> Tuple[int, dict]:
        local_hub.check_repo_id(repo_id)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
        return 200, {"files": files}

    def _commit(self, repo_id: str, body: bytes) -> Tuple[int, dict]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return 400, {"error": "the commit payload does not start with a header line"}
        header = lines[0]["value"]
        files = {}
        for op in lines[1:]:
            value = op.get("value", {})
            if op.get("key") != "file" or value.get("encoding") != "base64":
                return 400, {"error": f"this stub only accepts base64 'file' operations, got {op.get('key')!r}"}
            files[value["path"]] = base64.b64decode(value["content"])
        message = header.get("summary") or "Upload"
        if header.get("description"):
            message += "\n\n" + header["description"]
        sha = local_hub.commit_files(self.root, repo_id, files, message, parent=header.get("parentCommit"))
        return 200, {"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{repo_id}/commit/{sha}",
                     "hookOutput": ""}


class OlahServer:
    """The olah mirror (``olah-cli``, offline) serving the local directory hub ``root`` on a free loopback port.

    ``workdir`` receives the config and olah's ``logs``. Use ``endpoint`` as ``HF_ENDPOINT``.
    """

    STARTUP_TIMEOUT = 60.0

    def __init__(self, root: str | os.PathLike, workdir: str | os.PathLike):
        self.root = Path(root).resolve()
        self.workdir = Path(workdir).resolve()
        self.port = 0
        self.endpoint = ""
        self._proc: Optional[subprocess.Popen] = None
        self._log: Optional[Path] = None

    @staticmethod
    def cli() -> Path:
        return Path(sys.executable).parent / "olah-cli"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("olah") is not None and cls.cli().is_file()

    def __enter__(self) -> "OlahServer":
        if not self.available():
            raise RuntimeError(f"olah is not installed (no olah package or no {self.cli()})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        config = self.workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f"repos-path = {json.dumps(str(self.workdir / 'olah-repos'))}\n"
            f"mirrors-path = [{json.dumps(str(self.root))}]\n"
            f'mirror-netloc = "127.0.0.1:{self.port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            "[accessibility]\n"
            "offline = true\n")
        self._log = self.workdir / "olah-cli.log"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen([str(self.cli()), "-c", str(config)], cwd=self.workdir,
                                          stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _log_tail(self, n: int = 2000) -> str:
        return self._log.read_text(errors="replace")[-n:] if self._log and self._log.is_file() else ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"olah-cli exited with code {self._proc.returncode} before answering on "
                                   f"{self.endpoint}; end of its log:\n{self._log_tail()}")
            try:  # uvicorn listens only once the app has started (olah's own "/" page answers 500)
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"olah-cli did not answer on {self.endpoint} within {self.STARTUP_TIMEOUT:.0f} s; "
                           f"end of its log:\n{self._log_tail()}")

    def _stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
