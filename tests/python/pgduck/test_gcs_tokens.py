"""GCS with a service-account key or the metadata server: pgduck_server mints OAuth2
access tokens and DuckDB reads gs:// with them.

No Google endpoint is reachable here, so a local HTTP server plays three parts: the
OAuth2 token endpoint named by the key file's token_uri (it verifies the signed JWT with
the key's public half), the GKE metadata server, and the GCS endpoint
(STORAGE_EMULATOR_HOST), which records the Authorization header of every request."""

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lake_testing import wait_for

CSV = b"id,name\n1,one\n2,two\n"
OBJECTS = [{"name": "data/f.csv", "etag": "CKih16GjycICEAE="}, {"name": "other/g.csv", "etag": "CAE="}]


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGoogle:
    def __init__(self, public_key, lifetime=3600):
        self.public_key = public_key
        self.lifetime = lifetime
        self.issued = []        # tokens handed out, in order
        self.grants = []        # verified JWT claims
        self.storage_auth = []  # Authorization headers GCS saw
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body: bytes, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def token(self, prefix):
                token = f"{prefix}-{len(fake.issued) + 1}"
                fake.issued.append(token)
                self.reply(200, json.dumps({"access_token": token, "expires_in": fake.lifetime,
                                            "token_type": "Bearer"}).encode())

            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                if self.path != "/token" or form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                    return self.reply(400, b'{"error": "unsupported_grant_type"}')
                header, claims, signature = form["assertion"][0].split(".")
                try:
                    fake.public_key.verify(b64url_decode(signature), f"{header}.{claims}".encode(),
                                           padding.PKCS1v15(), hashes.SHA256())
                except Exception:
                    return self.reply(400, b'{"error": "invalid_grant"}')
                fake.grants.append(json.loads(b64url_decode(claims)))
                self.token("ya29.sa")

            def do_GET(self):
                if self.path.startswith("/computeMetadata/"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self.reply(403, b"missing Metadata-Flavor")
                    return self.token("ya29.meta")
                fake.storage_auth.append(self.headers.get("Authorization"))
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                # The JSON API, which pgduck_server lists entity tags with.
                if url.path == "/storage/v1/b/bkt/o":
                    items = [o for o in OBJECTS if o["name"].startswith(query.get("prefix", [""])[0])]
                    return self.reply(200, json.dumps({"items": items}).encode())
                if url.path.startswith("/storage/v1/b/bkt/o/"):
                    name = urllib.parse.unquote(url.path.rsplit("/", 1)[1])
                    found = [o for o in OBJECTS if o["name"] == name]
                    return self.reply(200, json.dumps(found[0]).encode()) if found else \
                        self.reply(404, b'{"error": {"code": 404}}')
                if self.path == "/bkt/data/f.csv":
                    return self.reply(200, CSV, "text/csv")
                self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake_google(rsa_key):
    fake = FakeGoogle(rsa_key.public_key())
    yield fake
    fake.close()


def key_file(path, rsa_key, token_uri):
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                                "private_key": pem, "client_email": "lake@p.iam.gserviceaccount.com",
                                "token_uri": token_uri}))
    return pem


def read_gcs(server):
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        return c.execute("SELECT id, name FROM read_csv('gs://bkt/data/f.csv') ORDER BY id").fetchall()


def test_service_account_key_gives_tokens_duckdb_uses(tmp_path, start_pgduck, fake_google, rsa_key):
    pem = key_file(tmp_path / "sa.json", rsa_key, f"http://127.0.0.1:{fake_google.port}/token")
    fake_google.lifetime = 2  # renewed after the 5 s floor
    server = start_pgduck("duck-gcs-sa", {
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "sa.json"),
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{fake_google.port}",
    })
    wait_for(lambda: fake_google.issued, "a token request")
    claims = fake_google.grants[0]
    assert claims["iss"] == "lake@p.iam.gserviceaccount.com"
    assert claims["aud"] == f"http://127.0.0.1:{fake_google.port}/token"
    assert "devstorage.read_write" in claims["scope"]
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    wait_for(lambda: read_gcs(server) == [(1, "one"), (2, "two")], "reading gs:// with the token", timeout=10)
    assert fake_google.storage_auth[-1] in {f"Bearer {t}" for t in fake_google.issued}

    # Entity tags (lake_file.list's etag) come from the JSON API with the same token.
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        tags = "SELECT path, etag FROM pg_lake_file_etags(%s) ORDER BY path"
        assert c.execute(tags, ("gs://bkt/data/*.csv",)).fetchall() == [("gs://bkt/data/f.csv", "CKih16GjycICEAE=")]
        assert c.execute(tags, ("gs://bkt/data/f.csv",)).fetchall() == [("gs://bkt/data/f.csv", "CKih16GjycICEAE=")]
        assert c.execute(tags, ("gs://bkt/**",)).fetchall() == \
            [("gs://bkt/data/f.csv", "CKih16GjycICEAE="), ("gs://bkt/other/g.csv", "CAE=")]
        assert c.execute(tags, ("gs://bkt/data/none.csv",)).fetchall() == []
    assert fake_google.storage_auth[-1] in {f"Bearer {t}" for t in fake_google.issued}

    # The token is renewed before it expires, and DuckDB switches to the new one.
    wait_for(lambda: len(fake_google.issued) >= 2, "a renewed token", timeout=20)
    newest = fake_google.issued[-1]
    assert read_gcs(server) == [(1, "one"), (2, "two")]
    assert fake_google.storage_auth[-1] in (f"Bearer {t}" for t in fake_google.issued[1:])
    assert newest.startswith("ya29.sa-")

    server.stop()
    log = server.log.read_text()
    assert "GCS access token installed" in log
    for token in fake_google.issued:
        assert token not in log
    assert pem.splitlines()[1] not in log


def test_metadata_server_tokens(start_pgduck, fake_google):
    server = start_pgduck("duck-gcs-meta", {
        "PG_LAKE_GCS_METADATA_SERVER": "true",
        "GCE_METADATA_HOST": f"127.0.0.1:{fake_google.port}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{fake_google.port}",
    })
    wait_for(lambda: fake_google.issued, "a metadata token request")
    assert read_gcs(server) == [(1, "one"), (2, "two")]
    assert fake_google.storage_auth[-1] == "Bearer ya29.meta-1"


def test_unusable_key_files_stop_start_up_and_name_the_file(tmp_path, start_pgduck):
    bad = tmp_path / "user.json"
    bad.write_text(json.dumps({"type": "authorized_user", "refresh_token": "1//SECRET-REFRESH"}))
    with pytest.raises(RuntimeError) as e:
        start_pgduck("duck-gcs-bad", {"GOOGLE_APPLICATION_CREDENTIALS": str(bad)})
    message = str(e.value)
    assert "user.json" in message and "service_account" in message
    assert "SECRET-REFRESH" not in message


def test_a_failing_token_endpoint_is_retried_while_the_server_serves(tmp_path, start_pgduck, rsa_key):
    # token_uri points at a closed port: start-up still succeeds, and other queries work.
    key_file(tmp_path / "sa.json", rsa_key, "http://127.0.0.1:9/token")
    server = start_pgduck("duck-gcs-down", {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "sa.json")})
    with psycopg.connect(server.conninfo, autocommit=True) as c:
        assert c.execute("SELECT 40 + 2").fetchone() == (42,)
    wait_for(lambda: "trying again" in server.log.read_text(), "the retry to be logged")
