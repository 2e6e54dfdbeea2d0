# Copyright 2026 The diffusers-maskdm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""A loopback Hugging Face Hub for tests: the part of the Hub HTTP API that `huggingface_hub` uses to push and pull.

Standard library only. The server binds 127.0.0.1 on a free port, keeps repositories in memory, and stops itself
after `max_lifetime_s` even if a test forgets to. It answers:

- `POST /api/repos/create` (409 when the repo exists, as the Hub does; `exist_ok` relies on it),
- `POST /api/validate-yaml` (the README check `create_commit` runs first),
- `POST /api/models/{repo}/preupload/{rev}` ("regular" for every file, so contents travel inline in the commit),
- `POST /api/models/{repo}/commit/{rev}` (ndjson: header, file, deletedFile, deletedFolder),
- `GET /api/models/{repo}[/revision/{rev}]` (repo info with `sha` and `siblings`),
- `GET /api/whoami-v2` and `GET /api/agent-harnesses` (an empty registry; the client asks once per process),
- `GET /api/models/{repo}/tree/{rev}[/{path}]` (`recursive` honoured),
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}` with the `X-Repo-Commit`, `ETag` and `Content-Length` headers.

Anything else gets a 404 and is recorded in `LoopbackHub.unhandled`, so a test can assert that the client asked for
nothing this server does not model. Writes without an `Authorization` header get a 401, and private repos look
missing to reads without one, as on the Hub.

```py
with LoopbackHub() as hub:
    os.environ["HF_ENDPOINT"] = hub.endpoint  # see `use_loopback_hub` for what else must point at it
```
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


__all__ = ["LoopbackHub", "use_loopback_hub"]

# The namespace a repo id without one lands in (the Hub uses the token owner's name).
DEFAULT_NAMESPACE = "test-user"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = {
    "create": re.compile(r"^/api/repos/create$"),
    "validate_yaml": re.compile(r"^/api/validate-yaml$"),
    "whoami": re.compile(r"^/api/whoami-v2$"),
    "agent_harnesses": re.compile(r"^/api/agent-harnesses$"),
    "preupload": re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"),
    "commit": re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"),
    "tree": re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"),
    "info": re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"),
    "resolve": re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"),
}


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's `oid` and `ETag`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Commit:
    sha: str
    message: str
    files: dict[str, bytes]


@dataclass
class _Repo:
    repo_id: str
    private: bool
    commits: list[_Commit] = field(default_factory=list)

    def resolve(self, revision: str) -> _Commit | None:
        """`main` (the only branch) or a full commit sha."""
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c.sha == revision), None)


class _HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.error_code, self.extra = status, message, error_code, extra


class LoopbackHub:
    """An in-memory Hub on `http://127.0.0.1:<free port>`; use it as a context manager or call `start`/`stop`.

    Args:
        max_lifetime_s (`float`, *optional*, defaults to 300):
            The server shuts itself down after this many seconds, so a hung test cannot leave it running.
        max_body_bytes (`int`, *optional*, defaults to 64 MiB):
            Larger request bodies are refused with 413; it bounds what a test can make the server hold.
    """

    def __init__(self, max_lifetime_s: float = 300.0, max_body_bytes: int = 64 * 2**20):
        self.max_lifetime_s = max_lifetime_s
        self.max_body_bytes = max_body_bytes
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._request_authorized = False  # of the request being served (requests are served one at a time)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- life cycle -------------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("The loopback Hub is not running: call `start()` or use it in a `with` block.")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection helpers for tests -------------------------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (a copy)."""
        with self._lock:
            return dict(self.repos[repo_id].resolve(revision).files)

    def commit_shas(self, repo_id: str) -> list[str]:
        with self._lock:
            return [c.sha for c in self.repos[repo_id].commits]

    # -- the API ----------------------------------------------------------------------------------------------------
    def _get_repo(self, repo_id: str) -> _Repo:
        repo = self.repos.get(repo_id)
        # As on the Hub, a private repo looks missing to a request without a token.
        if repo is None or (repo.private and not self._request_authorized):
            raise _HubError(404 if repo is None else 401, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo_id: str, revision: str) -> _Commit:
        commit = self._get_repo(repo_id).resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _new_commit(self, repo: _Repo, message: str, files: dict[str, bytes]) -> _Commit:
        digest = hashlib.sha1(f"{repo.repo_id}\n{len(repo.commits)}\n{message}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        commit = _Commit(sha=digest.hexdigest(), message=message, files=files)
        repo.commits.append(commit)
        return commit

    def create_repo(self, body: dict) -> dict:
        if body.get("type", "model") != "model":
            raise _HubError(400, "The loopback Hub only stores model repos")
        name = body.get("name")
        if not name or "/" in name:
            raise _HubError(400, f"Invalid repo name {name!r}")
        repo_id = f"{body.get('organization') or DEFAULT_NAMESPACE}/{name}"
        if repo_id in self.repos:
            # The Hub's 409 carries the url too: `create_repo(exist_ok=True)` reads it.
            raise _HubError(409, "You already created this model repo", url=f"{self.endpoint}/{repo_id}")
        repo = _Repo(repo_id=repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
        # Like the Hub, a new repo starts with one commit holding a .gitattributes file.
        self._new_commit(
            repo, "initial commit", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        )
        self.repos[repo_id] = repo
        return {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}

    def preupload(self, repo_id: str, revision: str, body: dict) -> dict:
        files = self._get_commit(repo_id, revision).files
        return {
            "files": [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None,
                }
                for f in body.get("files", [])
            ]
        }

    def commit(self, repo_id: str, revision: str, raw: bytes) -> dict:
        if revision != "main":
            raise _HubError(400, "The loopback Hub only commits to the main branch")
        repo = self._get_repo(repo_id)
        files = dict(repo.commits[-1].files)
        message = ""
        for line in raw.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent is not None and parent != repo.commits[-1].sha:
                    raise _HubError(412, f"parentCommit {parent} is not the head of main")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise _HubError(400, f"Unsupported file encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            else:  # lfsFile needs an LFS store this server does not have; preupload never asks for one.
                raise _HubError(400, f"Unsupported commit operation {key!r}")
        commit = self._new_commit(repo, message, files)
        return {
            "commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit.sha}",
            "commitOid": commit.sha,
            "success": True,
        }

    def info(self, repo_id: str, revision: str | None) -> dict:
        repo = self._get_repo(repo_id)
        commit = self._get_commit(repo_id, revision or "main")
        return {
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def tree(self, repo_id: str, revision: str, path: str | None, recursive: bool) -> list[dict]:
        commit = self._get_commit(repo_id, revision)
        prefix = path.strip("/") + "/" if path else ""
        entries: dict[str, dict] = {}
        for file_path, content in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            # Every folder between `prefix` and the file, down to the file itself when recursive.
            depth = len(rest) if recursive else 1
            for i in range(1, min(depth, len(rest)) + 1):
                entry_path = prefix + "/".join(rest[:i])
                if i == len(rest):
                    entries[entry_path] = {
                        "type": "file",
                        "path": entry_path,
                        "size": len(content),
                        "oid": git_blob_sha1(content),
                    }
                else:
                    entries.setdefault(
                        entry_path,
                        {
                            "type": "directory",
                            "path": entry_path,
                            "size": 0,
                            "oid": hashlib.sha1(entry_path.encode()).hexdigest(),
                        },
                    )
        if prefix and not entries:
            raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return list(entries.values())

    def resolve(self, repo_id: str, revision: str, path: str) -> tuple[_Commit, bytes]:
        commit = self._get_commit(repo_id, revision)
        if path not in commit.files:
            raise _HubError(404, "Entry not found", "EntryNotFound")
        return commit, commit.files[path]


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: pytest shows failures, not traffic
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_body_bytes:
            raise _HubError(413, f"Request body of {length} bytes is over the loopback Hub's limit")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        hub = self.hub
        hub.requests.append((method, self.path))
        try:
            body = self._read_body() if method == "POST" else b""
            if method == "POST" and not self.headers.get("Authorization"):
                raise _HubError(401, "Invalid credentials in Authorization header")
            with hub._lock:
                hub._request_authorized = bool(self.headers.get("Authorization"))
                if method == "POST" and (m := _ROUTES["create"].match(path)):
                    return self._send_json(hub.create_repo(json.loads(body)))
                if method == "POST" and _ROUTES["validate_yaml"].match(path):
                    return self._send_json({"errors": [], "warnings": []})
                if method == "GET" and _ROUTES["agent_harnesses"].match(path):
                    # huggingface_hub fetches this registry once to describe its caller in the User-Agent.
                    return self._send_json({"standardEnvVars": [], "harnesses": {}})
                if method == "GET" and _ROUTES["whoami"].match(path):
                    return self._send_json({"type": "user", "name": DEFAULT_NAMESPACE, "orgs": []})
                if method == "POST" and (m := _ROUTES["preupload"].match(path)):
                    return self._send_json(hub.preupload(m["repo"], m["rev"], json.loads(body)))
                if method == "POST" and (m := _ROUTES["commit"].match(path)):
                    if query.get("create_pr"):
                        raise _HubError(400, "The loopback Hub does not support pull requests")
                    return self._send_json(hub.commit(m["repo"], m["rev"], body))
                if method == "GET" and (m := _ROUTES["tree"].match(path)):
                    recursive = query.get("recursive", "false").lower() in ("1", "true")
                    return self._send_json(hub.tree(m["repo"], m["rev"], m["path"], recursive))
                if method == "GET" and (m := _ROUTES["info"].match(path)):
                    return self._send_json(hub.info(m["repo"], m["rev"]))
                if method in ("GET", "HEAD") and (m := _ROUTES["resolve"].match(path)):
                    commit, content = hub.resolve(m["repo"], m["rev"], m["path"])
                    headers = {
                        "X-Repo-Commit": commit.sha,
                        "ETag": f'"{git_blob_sha1(content)}"',
                        "Content-Type": "application/octet-stream",
                    }
                    return self._send(200, content, headers, head=method == "HEAD")
            hub.unhandled.append((method, self.path))
            raise _HubError(404, f"The loopback Hub does not serve {method} {path}")
        except _HubError as err:
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            payload = {"error": err.message, **err.extra}
            self._send(err.status, json.dumps(payload).encode(), headers, head=method == "HEAD")
        except (ValueError, KeyError) as err:  # malformed JSON / ndjson from the client
            self._send(
                400, json.dumps({"error": f"Bad request: {err}"}).encode(), {"Content-Type": "application/json"}
            )

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


def use_loopback_hub(hub: LoopbackHub, monkeypatch, cache_dir) -> None:
    """Point `huggingface_hub` and diffusers at `hub` for one test, with a throw-away cache and a fake token.

    Name resolution is also limited to the loopback address for the test, so a request that would leave the
    machine fails at once instead of hanging.

    `huggingface_hub` reads `HF_ENDPOINT` once, at import, into `constants.ENDPOINT` and into the module-level `HfApi`
    that backs `create_repo`, `upload_folder` & co.; diffusers copies it too. Setting the environment variable alone
    would therefore leave those pointing at huggingface.co, so the constants are patched as well. (This helper
    imports `huggingface_hub`; the server above does not.)

    Args:
        hub (`LoopbackHub`): a started server.
        monkeypatch: pytest's `monkeypatch` fixture; everything is undone after the test.
        cache_dir: folder for the Hub cache (`HF_HOME` and `HF_HUB_CACHE`).
    """
    import socket

    from huggingface_hub import constants, hf_api

    endpoint = hub.endpoint
    # Fail fast, and loudly, if anything tries to resolve a host other than the loopback one.
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only_getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1", b"localhost"):
            raise OSError(f"test tried to reach {host!r}: only the loopback Hub may be contacted")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only_getaddrinfo)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_test_token")
    monkeypatch.setenv("HF_HOME", str(cache_dir))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    try:
        import diffusers.utils.constants as diffusers_constants

        monkeypatch.setattr(diffusers_constants, "HUGGINGFACE_CO_RESOLVE_ENDPOINT", endpoint)
    except ImportError:
        pass
