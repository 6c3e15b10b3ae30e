"""`lake_operator run` against a small in-memory Kubernetes API server on
127.0.0.1: it takes the leader Lease, reconciles a LakeCluster into exactly what
`render` prints, serves /metrics and /healthz, logs JSON without secrets, and on
SIGTERM hands the Lease back and exits cleanly."""

import base64
import json
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lake_testing import free_port
from lake_operator_support import CRD_PATH, NEWEST_KUBERNETES, REPO, operator_bin, run_operator  # noqa: F401 (fixtures)

NS = "default"
LEASE_NS = "lake-system"
EXAMPLE = REPO / "examples/local-dev.yaml"
SECRET_VALUE = "minio-secret-never-shown"


def not_found(path):
    return 404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "reason": "NotFound", "code": 404, "message": f"{path} not found"}


class FakeApiServer:
    """Named objects by path; lists and (silent) watches for collections; apply,
    create, replace and delete as the real API server answers them."""

    def __init__(self):
        self.objects = {}
        self.requests = []
        self.version = 1
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def handle(self, method, path, query, body):
        with self.lock:
            self.requests.append((method, path, query, body))
            if method == "GET" and path in self.objects:
                return 200, self.objects[path]
            if method == "GET" and query.get("watch"):
                return "watch", None
            if method == "GET":
                items = [o for p, o in self.objects.items() if self.in_collection(p, path)]
                if self.is_collection(path):
                    return 200, {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(self.version)}, "items": items}
                return not_found(path)
            if method == "POST":
                body.setdefault("metadata", {})["resourceVersion"] = self.next_version()
                self.objects[f"{path}/{body['metadata']['name']}"] = body
                return 201, body
            if method == "PUT":
                body["metadata"]["resourceVersion"] = self.next_version()
                self.objects[path] = body
                return 200, body
            if method == "PATCH" and path.endswith("/status"):
                owner = self.objects[path.removesuffix("/status")]
                owner["status"] = body["status"]
                return 200, owner
            if method == "PATCH" and "/events/" in path:
                return 200, body
            if method == "PATCH":
                body.setdefault("metadata", {})["resourceVersion"] = self.next_version()
                self.objects[path] = body
                return 200, body
            if method == "DELETE":
                self.objects.pop(path, None)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return 405, {}

    @staticmethod
    def is_collection(path):
        parts = path.strip("/").split("/")
        core = parts[0] == "api"
        rest = parts[2:] if core else parts[3:]
        if rest[:1] == ["namespaces"]:
            rest = rest[2:]
        return len(rest) == 1

    @staticmethod
    def in_collection(object_path, collection):
        """`/apis/g/v/namespaces/ns/things/x` is in `.../namespaces/ns/things` and in `/apis/g/v/things`."""
        parent, _ = object_path.rsplit("/", 1)
        if parent == collection:
            return True
        parts = parent.split("/")
        if "namespaces" in parts:
            i = parts.index("namespaces")
            return "/".join(parts[:i] + parts[i + 2:]) == collection
        return False


def serve(api: FakeApiServer, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do(self):
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, reply = api.handle(self.command, url.path, query, body)
            if status == "watch":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                api.stopping.wait(float(query.get("timeoutSeconds", 290)))
                self.wfile.write(b"0\r\n\r\n")
                return
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_until(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def permission(method, path, query):
    """The RBAC (group, resource, verb) a request needs."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[:1] == ["namespaces"]:
        rest = rest[2:]
    resource = "/".join([rest[0], *rest[2:]])
    named = len(rest) > 1
    verb = {
        "GET": "get" if named else ("watch" if query.get("watch") else "list"),
        "POST": "create", "PATCH": "patch", "PUT": "update",
        "DELETE": "delete" if named else "deletecollection",
    }[method]
    return group, resource, verb


def comparable(obj):
    """What `run` and `render` must agree on: all but the owner (render has no
    uid), the hash that covers it and the server's bookkeeping."""
    obj = json.loads(json.dumps(obj))
    meta = obj["metadata"]
    for key in ("ownerReferences", "resourceVersion"):
        meta.pop(key, None)
    meta.get("annotations", {}).pop("pglake.dev/applied-hash", None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    if obj["kind"] == "Secret":
        # Generated values: each run makes its own.
        obj["stringData"].pop("password", None)
        obj["stringData"].pop("token", None)
    return obj


@pytest.fixture
def cluster(tmp_path):
    api = FakeApiServer()
    lc = yaml.safe_load(EXAMPLE.read_text())
    lc["metadata"].update(namespace=NS, uid="7f0c1c9e-1111-4222-8333-444455556666", generation=1,
                          resourceVersion="1", finalizers=["pglake.dev/cleanup"])
    api.objects[f"/apis/pglake.dev/v1alpha1/namespaces/{NS}/lakeclusters/{lc['metadata']['name']}"] = lc
    # The Secret the example names, as the API server returns it: the operator reads
    # it (that it has the keys the pods need) before it applies anything.
    keys = lc["spec"]["objectStorage"]["credentials"]["s3KeysSecret"]["name"]
    api.objects[f"/api/v1/namespaces/{NS}/secrets/{keys}"] = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": keys, "namespace": NS, "resourceVersion": "1"},
        "data": {k: base64.b64encode(SECRET_VALUE.encode()).decode() for k in ("accessKeyId", "secretAccessKey")},
    }
    port = free_port()
    server = serve(api, port)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NS}}],
    }))
    yield api, kubeconfig, lc
    api.stopping.set()
    server.shutdown()


def test_run_leads_reconciles_serves_and_shuts_down(operator_bin, cluster, tmp_path):
    api, kubeconfig, lc = cluster
    metrics_port = free_port()
    log = open(tmp_path / "operator.log", "w+")
    proc = subprocess.Popen(
        [str(operator_bin), "run", "--metrics-addr", f"127.0.0.1:{metrics_port}", "--lease-namespace", LEASE_NS,
         "--identity", "op-1", "--lease-seconds", "3"],
        # As the chart sets it by default: empty, for all namespaces.
        env={"KUBECONFIG": str(kubeconfig), "RUST_LOG": "info", "PATH": "/usr/bin:/bin", "WATCH_NAMESPACES": ""},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        health = wait_until(lambda: http_get(metrics_port, "/healthz"), "/healthz")
        wait_until(lambda: json.loads(http_get(metrics_port, "/healthz"))["leader"], "leadership")
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/lake-operator-leader"
        assert api.objects[lease_path]["spec"]["holderIdentity"] == "op-1", health

        lc_path = f"/apis/pglake.dev/v1alpha1/namespaces/{NS}/lakeclusters/dev"
        status = wait_until(lambda: api.objects[lc_path].get("status"), "the LakeCluster's status")
        assert status["phase"] == "Provisioning"
        assert status["endpoint"] == f"dev-rw.{NS}.svc:5432"
        assert status["catalogTokenSecret"] == "dev-catalog-token"
        wait_until(lambda: any(m == "PUT" and p == lease_path for m, p, _, _ in api.requests), "a lease renewal")

        rendered = run_operator(operator_bin, "render", str(EXAMPLE))
        assert rendered.returncode == 0, rendered.stderr
        expected = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] != "Job"]
        with api.lock:
            applied = {(o["kind"], o["metadata"]["name"]): o for p, o in api.objects.items()
                       if f"/namespaces/{NS}/" in p and o.get("kind") not in ("LakeCluster", "Event")
                       and "/secrets/minio-keys" not in p}
        assert sorted(applied) == sorted((o["kind"], o["metadata"]["name"]) for o in expected)
        for obj in expected:
            live = applied[(obj["kind"], obj["metadata"]["name"])]
            assert comparable(live) == comparable(obj), obj["kind"]
            if obj["kind"] != "Secret":
                assert live["metadata"]["ownerReferences"][0]["uid"] == lc["metadata"]["uid"]

        metrics = http_get(metrics_port, "/metrics")
        assert "lake_operator_reconciles_total" in metrics
        assert "lake_operator_reconcile_duration_seconds_bucket" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    released = [b for m, p, _, b in api.requests if m == "PUT" and p == lease_path][-1]
    assert "holderIdentity" not in released["spec"], "the Lease is handed back on shutdown"

    rbac = run_operator(operator_bin, "rbac")
    granted = {
        (g, r, v)
        for doc in yaml.safe_load_all(rbac.stdout) if doc
        for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    for method, path, query, _ in api.requests:
        assert permission(method, path, query) in granted, f"{method} {path} is not granted by `lake_operator rbac`"

    log.seek(0)
    lines = [l for l in log.read().splitlines() if l.strip()]
    assert lines and all(json.loads(l)["level"] for l in lines), "logs are JSON lines"
    generated = {o["metadata"]["name"]: o["stringData"] for o in api.objects.values()
                 if o.get("kind") == "Secret" and "stringData" in o}
    password = generated["dev-superuser"]["password"]
    token = generated["dev-catalog-token"]["token"]
    assert all(password not in l for l in lines), "the generated password is never logged"
    assert all(token not in l for l in lines), "the generated catalog token is never logged"
    # Events and the status name the token's Secret, never hold its value.
    for obj in api.objects.values():
        if obj.get("kind") in ("Event", "LakeCluster"):
            assert token not in json.dumps(obj) and password not in json.dumps(obj), obj.get("kind")
    assert all(SECRET_VALUE not in l and base64.b64encode(SECRET_VALUE.encode()).decode() not in l for l in lines)
    assert_bodies_are_valid(api.requests, secrets=[password, token, SECRET_VALUE])


def assert_bodies_are_valid(requests, secrets):
    """Every object the running operator sends is valid Kubernetes (strictly, for
    the version its types are built for): what it applies, the Lease, its Events;
    the status it writes satisfies the CRD's schema. Secret values are in Secrets only."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    kinds = set()
    for method, path, query, body in requests:
        if not isinstance(body, dict):
            continue  # the finalizer's JSON patch
        text = json.dumps(body)
        if body.get("kind") != "Secret":
            assert not any(s in text for s in secrets), f"{method} {path} carries a secret value"
        if path.endswith("/status"):
            jsonschema.Draft4Validator(status_schema).validate(body["status"])
            kinds.add("LakeCluster/status")
            continue
        full = method in ("POST", "PUT") or (method == "PATCH" and query.get("force") == "true")
        if not full:
            continue  # a merge patch (an Event series) is not a whole object
        try:
            kubernetes_validate.validate(body, NEWEST_KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{method} {path}: {body.get('kind')} is invalid: {e}")
        kinds.add(body["kind"])
    for kind in ("Lease", "Event", "StatefulSet", "Deployment", "Secret", "LakeCluster/status"):
        assert kind in kinds, f"no {kind} among the bodies sent: {sorted(kinds)}"
