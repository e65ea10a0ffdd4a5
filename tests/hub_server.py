"""A small Hugging Face Hub-compatible HTTP server, for tests only (the real Hub is unreachable here).

It implements just what ``huggingface_hub`` 2.4 calls to publish and fetch repos (models; Spaces and
datasets alike, under ``/api/spaces/…`` and ``/spaces/…``), answering like the Hub does (status codes,
``X-Error-Code`` headers), so the real client runs unmodified:

- ``POST /api/repos/create``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
- ``GET /api/models/{repo}[/revision/{rev}]`` (sha, siblings, cardData), ``GET .../tree/{rev}[/{path}]``,
  ``GET .../refs``, ``POST .../tag/{rev}``, ``POST .../branch/{name}``
- uploads: ``POST .../preupload/{rev}``, the LFS batch API (``/{repo}.git/info/lfs/objects/batch``,
  a signed ``PUT`` upload url, ``verify``) and the NDJSON ``POST .../commit/{rev}``
- downloads: ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``, ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, and ``Range``.

A repo is a set of commits (sha → {path: blob}) plus branches and tags; file contents live once per
sha256 under ``storage_dir/objects``. Private repos answer 401 unless the request carries one of
``tokens`` as a Bearer token. ``server.failures[route] = (status, message)`` makes a route fail, to
test error handling. It listens on 127.0.0.1 only, caps request bodies and closes every connection
after one response, so stopping it really makes it unreachable.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

DEFAULT_TOKEN = "hf_test_write_token_0123456789"
DEFAULT_USER = "tester"
MAX_BODY_BYTES = 64 * 1024 * 1024
REGULAR_FILE_MAX_BYTES = 10 * 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt", ".ts", ".png", ".jpg", ".npz", ".zip")
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
REPO_ID = r"(?P<repo>[\w.-]+/[\w.-]+)"
API_REPO = rf"/api/(?P<type>models|spaces|datasets)/{REPO_ID}"  # /api/models/org/name
GIT_REPO = rf"/(?:(?P<type>spaces|datasets)/)?{REPO_ID}"  # /org/name, /spaces/org/name
SEGMENT = r"[^/]+"


@dataclass(frozen=True)
class Blob:
    """A file's content, stored once by sha256; ``lfs`` says whether the repo tracks it with Git LFS."""

    sha256: str
    size: int
    lfs: bool

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    def git_oid(self, content: bytes | None = None) -> str:
        """The git blob id: of the LFS pointer for LFS files, of the content for regular ones."""
        data = self.pointer if self.lfs else content
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    files: dict[str, Blob]
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def find(self, revision: str) -> Commit | None:
        """A branch, tag (also as ``refs/heads/…``/``refs/tags/…``) or full commit sha → the commit."""
        name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        sha = self.branches.get(name) or self.tags.get(name) or (revision if revision in self.commits else None)
        return self.commits.get(sha) if sha else None


class HubError(Exception):
    """An error answer: status, the Hub's ``X-Error-Code`` (if any) and message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}


def repo_key(kind: str, repo_id: str) -> str:
    """How the server names a repo: ``org/name`` for models, ``spaces/org/name`` / ``datasets/org/name`` else."""
    return repo_id if kind == "model" else f"{kind}s/{repo_id}"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubServer:
    """The server and its state; ``start()`` serves it from a background thread."""

    def __init__(self, storage_dir: str | Path, tokens: dict[str, str] | None = None):
        self.objects = Path(storage_dir) / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: DEFAULT_USER}
        self.repos: dict[str, Repo] = {}
        self.failures: dict[str, tuple[int, str]] = {}
        self.requests: collections.deque = collections.deque(maxlen=2000)  # (method, route, sent a token)
        self.lock = threading.RLock()
        self._upload_grants: dict[str, str] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hub-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_private(self, key: str, private: bool = True) -> None:
        with self.lock:
            self.repos[key].private = private

    # -- storage --------------------------------------------------------------------------

    def store(self, data: bytes, lfs: bool) -> Blob:
        sha = hashlib.sha256(data).hexdigest()
        path = self.objects / sha
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return Blob(sha, len(data), lfs)

    def content(self, blob: Blob) -> bytes:
        return (self.objects / blob.sha256).read_bytes()

    def has_object(self, sha256: str, size: int | None = None) -> bool:
        path = self.objects / sha256
        return path.is_file() and (size is None or path.stat().st_size == size)

    def oid(self, blob: Blob) -> str:
        """What the preupload and tree endpoints call a file's oid (git blob id)."""
        return blob.git_oid(None if blob.lfs else self.content(blob))

    def add_commit(self, repo: Repo, branch: str, title: str, files: dict[str, Blob]) -> Commit:
        parent = repo.branches.get(branch)
        record = json.dumps([parent, title, sorted((p, b.sha256, b.lfs) for p, b in files.items()),
                             len(repo.commits), secrets.token_hex(4)])
        commit = Commit(hashlib.sha1(record.encode()).hexdigest(), parent, title, dict(files), now())
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    # -- access ---------------------------------------------------------------------------

    def user(self, headers) -> str | None:
        """The user a request authenticates as; a token we do not know is a 401 like on the Hub."""
        auth = headers.get("authorization") or ""
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def readable(self, key: str, user: str | None) -> Repo:
        repo = self.repos.get(key)
        if repo is None or (repo.private and user is None):
            # Like the Hub: missing and private look the same; anonymous requests get a 401.
            raise HubError(404 if user else 401, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, key: str, user: str | None) -> Repo:
        if user is None:
            raise HubError(401, "You must be authenticated to write to a repo")
        return self.readable(key, user)

    def commit_at(self, repo: Repo, revision: str, extra_headers: dict | None = None) -> Commit:
        commit = repo.find(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound", extra_headers)
        return commit

    # -- endpoints ------------------------------------------------------------------------

    def create_repo(self, user, body, query):
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        kind = body.get("type") or "model"
        if kind not in ("model", "space", "dataset"):
            raise HubError(400, f"unknown repo type {kind!r}")
        repo_id = f"{body.get('organization') or user}/{body['name']}"
        key = repo_key(kind, repo_id)
        with self.lock:
            if key in self.repos:
                raise HubError(409, f"You already created this {kind} repo", extra={"url": f"{self.url}/{key}"})
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = self.repos[key] = Repo(repo_id, private, now())
            self.add_commit(repo, "main", "initial commit", {".gitattributes": self.store(GITATTRIBUTES.encode(),
                                                                                         False)})
        return 200, {"url": f"{self.url}/{key}", "name": repo_id, "id": repo_id}

    def whoami(self, user, body, query):
        if user is None:
            raise HubError(401, "Invalid username or password.")
        return 200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}}

    def validate_yaml(self, user, body, query):
        content = body.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def repo_info(self, user, key, revision, query):
        with self.lock:
            repo = self.readable(key, user)
            commit = self.commit_at(repo, revision or "main")
            blobs = query.get("blobs", [""])[0].lower() in ("1", "true")
            siblings = []
            for path, blob in sorted(commit.files.items()):
                sibling = {"rfilename": path}
                if blobs:
                    sibling.update(size=blob.size, blobId=self.oid(blob))
                    if blob.lfs:
                        sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": len(blob.pointer)}
                siblings.append(sibling)
            card = self._card_data(commit)
        return 200, {"_id": hashlib.sha1(key.encode()).hexdigest()[:24], "id": repo.repo_id,
                     "author": repo.repo_id.split("/")[0], "sha": commit.sha, "private": repo.private, "gated": False,
                     "disabled": False, "lastModified": commit.date, "createdAt": repo.created,
                     "tags": card.get("tags", []) if card else [], "library_name": card.get("library_name")
                     if card else None, "cardData": card, "siblings": siblings, "downloads": 0, "likes": 0}

    def _card_data(self, commit: Commit) -> dict | None:
        blob = commit.files.get("README.md")
        match = re.match(r"^---\n(.*?)\n---\n", self.content(blob).decode(), re.S) if blob else None
        try:
            return yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None

    def tree(self, user, key, rest, query):
        revision, _, prefix = rest.partition("/")
        revision, prefix = unquote(revision), unquote(prefix).strip("/")
        recursive = query.get("recursive", [""])[0].lower() in ("1", "true")
        with self.lock:
            commit = self.commit_at(self.readable(key, user), revision)
            under = {p: b for p, b in commit.files.items() if not prefix or p.startswith(prefix + "/")}
            if prefix and not under:
                raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound")
            entries, folders = [], set()
            for path, blob in sorted(under.items()):
                relative = path[len(prefix) + 1:] if prefix else path
                parts = relative.split("/")
                for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                    folders.add("/".join(([prefix] if prefix else []) + parts[:depth]))
                if recursive or len(parts) == 1:
                    entry = {"type": "file", "oid": self.oid(blob), "size": blob.size, "path": path}
                    if blob.lfs:
                        entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(blob.pointer)}
                    entries.append(entry)
        folder_entries = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                          for f in sorted(folders)]
        return 200, folder_entries + entries

    def refs(self, user, key, query):
        with self.lock:
            repo = self.readable(key, user)
            refs = {kind: [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": sha} for n, sha in names.items()]
                    for kind, prefix, names in (("branches", "heads", repo.branches), ("tags", "tags", repo.tags))}
        return 200, {**refs, "converts": []}

    def create_ref(self, user, key, kind, name, body):
        with self.lock:
            repo = self.writable(key, user)
            if kind == "tag":
                target, name = self.commit_at(repo, name), body["tag"]
                refs = repo.tags
            else:
                target, refs = self.commit_at(repo, body.get("startingPoint") or "main"), repo.branches
            if name in repo.tags or name in repo.branches:
                raise HubError(409, f"Reference {name} already exists")
            refs[name] = target.sha
        return 200, {}

    def preupload(self, user, key, revision, body, query):
        with self.lock:
            repo = self.writable(key, user)
            head = self.commit_at(repo, revision)
            answers = []
            for item in body.get("files", []):
                sample = base64.b64decode(item.get("sample", ""))
                lfs = (item["size"] > REGULAR_FILE_MAX_BYTES or item["path"].lower().endswith(LFS_SUFFIXES)
                       or b"\0" in sample)
                existing = head.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = existing.sha256 if existing.lfs else self.oid(existing)
                answers.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                                "shouldIgnore": False, "oid": oid})
        return 200, {"files": answers, "commitOid": head.sha}

    def lfs_batch(self, user, key, body):
        with self.lock:
            self.writable(key, user)
            if body.get("operation") != "upload":
                raise HubError(400, "only uploads are supported")
            objects = []
            for item in body.get("objects", []):
                oid, size = item["oid"], item["size"]
                answer = {"oid": oid, "size": size}
                if not self.has_object(oid, size):
                    grant = secrets.token_urlsafe(16)
                    self._upload_grants[grant] = oid
                    answer["authenticated"] = True
                    answer["actions"] = {
                        "upload": {"href": f"{self.url}/lfs-upload/{oid}?grant={grant}"},
                        "verify": {"href": f"{self.url}/{key}.git/info/lfs/objects/verify"},
                    }
                objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, oid, data, query):
        """The "signed url" an LFS upload goes to: the client sends no token, the grant is the credential."""
        grant = query.get("grant", [""])[0]
        with self.lock:
            if self._upload_grants.pop(grant, None) != oid:
                raise HubError(403, "invalid or expired upload url")
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        self.store(data, lfs=True)
        return 200, None

    def lfs_verify(self, user, key, body):
        with self.lock:
            self.writable(key, user)
        if not self.has_object(body["oid"], body["size"]):
            raise HubError(404, f"object {body['oid']} was not uploaded")
        return 200, {}

    def commit(self, user, key, revision, data, query):
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by this test server")
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit starts with a header line")
        header = lines[0]["value"]
        with self.lock:
            repo = self.writable(key, user)
            head = self.commit_at(repo, revision)
            if revision not in repo.branches:
                raise HubError(400, f"cannot commit to {revision}: not a branch")
            parent = header.get("parentCommit")
            if parent and not head.sha.startswith(parent):
                raise HubError(412, f"{revision} is at {head.sha}, not at the expected parent commit {parent}")
            files = dict(head.files)
            for line in lines[1:]:
                op, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if op == "file":
                    files[path] = self.store(base64.b64decode(value["content"]), lfs=False)
                elif op == "lfsFile":
                    if not self.has_object(value["oid"]):
                        raise HubError(422, f"{path}: LFS object {value['oid']} was never uploaded")
                    files[path] = Blob(value["oid"], (self.objects / value["oid"]).stat().st_size, True)
                elif op == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif op == "deletedFolder":
                    files = {p: b for p, b in files.items() if not p.startswith(path.rstrip("/") + "/")}
                else:
                    raise HubError(400, f"unknown commit operation {op!r}")
            commit = self.add_commit(repo, revision, header.get("summary") or "update", files)
        return 200, {"success": True, "commitOid": commit.sha, "commitUrl": f"{self.url}/{key}/commit/{commit.sha}",
                     "hookOutput": "", "pullRequestUrl": None}

    def resolve_file(self, user, key, revision, path, headers):
        """What HEAD/GET /resolve answer: the headers, the full content and its status."""
        with self.lock:
            repo = self.readable(key, user)
            commit = self.commit_at(repo, revision)
            blob = commit.files.get(path)
            if blob is None:
                raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            content = self.content(blob)
        response = {"X-Repo-Commit": commit.sha, "ETag": f'"{blob.git_oid(content)}"', "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream"}
        if blob.lfs:
            response.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        status, wanted = 200, headers.get("range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(content) - 1, len(content) - 1)
            if start >= len(content) and len(content) > 0:
                raise HubError(416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
            response["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        return status, response, content


def _make_handler(hub: HubServer):
    routes = [
        ("GET", re.compile(r"/api/whoami-v2"), "whoami"),
        ("POST", re.compile(r"/api/repos/create"), "create"),
        ("POST", re.compile(r"/api/validate-yaml"), "validate-yaml"),
        ("GET", re.compile(rf"{API_REPO}(?:/revision/(?P<rev>{SEGMENT}))?"), "info"),
        ("GET", re.compile(rf"{API_REPO}/tree/(?P<rest>.+)"), "tree"),
        ("GET", re.compile(rf"{API_REPO}/refs"), "refs"),
        ("POST", re.compile(rf"{API_REPO}/(?P<ref>tag|branch)/(?P<name>{SEGMENT})"), "ref"),
        ("POST", re.compile(rf"{API_REPO}/preupload/(?P<rev>{SEGMENT})"), "preupload"),
        ("POST", re.compile(rf"{API_REPO}/commit/(?P<rev>{SEGMENT})"), "commit"),
        ("POST", re.compile(rf"{GIT_REPO}\.git/info/lfs/objects/batch"), "lfs-batch"),
        ("POST", re.compile(rf"{GIT_REPO}\.git/info/lfs/objects/verify"), "lfs-verify"),
        ("PUT", re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})"), "lfs-upload"),
        ("GET", re.compile(rf"{GIT_REPO}/resolve/(?P<rev>{SEGMENT})/(?P<path>.+)"), "resolve"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a stopped server is really gone
        timeout = 30

        def do_GET(self):
            self._handle("GET")

        def do_HEAD(self):
            self._handle("HEAD")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def log_message(self, format, *args):  # requests are recorded in hub.requests, never printed
            pass

        def _handle(self, method):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            route, match = "unknown", None
            for verb, pattern, name in routes:
                match = pattern.fullmatch(url.path)
                if match and (verb == method or (verb == "GET" and method == "HEAD")):
                    route = name
                    break
            hub.requests.append((method, route, bool(self.headers.get("authorization"))))
            try:
                body = self._read_body()
                user = hub.user(self.headers)
                if route in hub.failures:
                    status, message = hub.failures[route]
                    raise HubError(status, message)
                if route == "unknown":
                    raise HubError(404, f"no route for {method} {url.path}")
                self._dispatch(method, route, {k: unquote(v) if v else v for k, v in match.groupdict().items()},
                               body, query, user)
            except HubError as err:
                payload = json.dumps({"error": err.message, **err.extra}).encode()
                headers = {"Content-Type": "application/json", "X-Error-Message": err.message, **err.headers}
                if err.code:
                    headers["X-Error-Code"] = err.code
                self._send(err.status, headers, payload, method)
            except (KeyError, TypeError, ValueError) as err:
                self._send(400, {"Content-Type": "application/json"}, json.dumps({"error": repr(err)}).encode(),
                           method)

        def _dispatch(self, method, route, args, body, query, user):
            key = repo_key((args.get("type") or "models").removesuffix("s"), args["repo"]) if args.get("repo") else None
            if route == "resolve":
                status, headers, content = hub.resolve_file(user, key, args["rev"], args["path"], self.headers)
                self._send(status, headers, content, method)
                return
            if route == "lfs-upload":
                status, answer = hub.lfs_upload(args["oid"], body, query)
            elif route == "commit":
                status, answer = hub.commit(user, key, args["rev"], body, query)
            else:
                data = json.loads(body) if body else {}
                status, answer = {
                    "whoami": lambda: hub.whoami(user, data, query),
                    "create": lambda: hub.create_repo(user, data, query),
                    "validate-yaml": lambda: hub.validate_yaml(user, data, query),
                    "info": lambda: hub.repo_info(user, key, args.get("rev"), query),
                    "tree": lambda: hub.tree(user, key, self._raw_tail(), query),
                    "refs": lambda: hub.refs(user, key, query),
                    "ref": lambda: hub.create_ref(user, key, args["ref"], args["name"], data),
                    "preupload": lambda: hub.preupload(user, key, args["rev"], data, query),
                    "lfs-batch": lambda: hub.lfs_batch(user, key, data),
                    "lfs-verify": lambda: hub.lfs_verify(user, key, data),
                }[route]()
            payload = b"" if answer is None else json.dumps(answer).encode()
            self._send(status, {"Content-Type": "application/json"}, payload, method)

        def _raw_tail(self):
            """The still-quoted ``{rev}[/{path}]`` of a tree url (the revision may contain an encoded ``/``)."""
            return urlsplit(self.path).path.split("/tree/", 1)[1]

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks, total = [], 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY_BYTES:
                        raise HubError(413, "request body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                raise HubError(413, "request body too large")
            return self.rfile.read(length) if length else b""

        def _send(self, status, headers, payload, method):
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)

    return Handler


def point_client_at(server: HubServer, home: str | Path, monkeypatch) -> dict[str, str]:
    """Make ``huggingface_hub`` talk to ``server`` only, with a fresh HF home (cache, assets, no token).

    Sets the environment (for subprocesses) and, since the client reads it once at import, its
    ``constants`` in this process too; returns the environment variables set.
    """
    from huggingface_hub import constants

    home = Path(home)
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_ASSETS_CACHE": str(home / "assets"), "HF_TOKEN_PATH": str(home / "token"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"ENDPOINT": server.url,
                        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
                        "HF_HUB_CACHE": env["HF_HUB_CACHE"], "HF_ASSETS_CACHE": env["HF_ASSETS_CACHE"],
                        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"], "HF_HUB_DISABLE_XET": True,
                        "HF_HUB_OFFLINE": False}.items():
        monkeypatch.setattr(constants, name, value)
    return env


def start_hub_server(storage_dir: str | Path, tokens: dict[str, str] | None = None):
    """Start a server in a thread: ``(url, stop)``. Use ``HubServer`` directly to reach its state."""
    server = HubServer(storage_dir, tokens).start()
    return server.url, server.stop
