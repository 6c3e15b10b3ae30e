"""16 concurrent committers x 50 commits on one table through the raw REST
API: every commit lands exactly once in the final snapshot log."""

import threading
import time

import requests

COMMITTERS = 16
COMMITS_EACH = 50
TIME_LIMIT_S = 420


def test_16_committers_x_50_commits_each_land_exactly_once(catalog_server, namespace):
    base = f"{catalog_server.url}/v1/namespaces/{namespace}/tables"
    created = requests.post(
        base,
        json={
            "name": "hot",
            "schema": {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "x", "required": False, "type": "long"}]},
        },
        timeout=30,
    )
    assert created.status_code == 200, created.text
    table_url = f"{base}/hot"
    deadline = time.monotonic() + TIME_LIMIT_S
    failures, conflicts = [], [0] * COMMITTERS

    def committer(w: int):
        session = requests.Session()
        try:
            for i in range(COMMITS_EACH):
                snapshot_id = w * 1000 + i + 1
                while True:
                    assert time.monotonic() < deadline, f"committer {w} ran out of time at commit {i}"
                    metadata = session.get(f"{table_url}?snapshots=refs", timeout=30).json()["metadata"]
                    parent = metadata.get("current-snapshot-id")
                    parent = None if parent in (None, -1) else parent
                    body = {
                        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": parent}],
                        "updates": [
                            {
                                "action": "add-snapshot",
                                "snapshot": {
                                    "snapshot-id": snapshot_id,
                                    "parent-snapshot-id": parent,
                                    "sequence-number": metadata["last-sequence-number"] + 1,
                                    "timestamp-ms": int(time.time() * 1000),
                                    "manifest-list": f"{metadata['location']}/metadata/snap-{snapshot_id}.avro",
                                    "summary": {"operation": "append", "committer": str(w)},
                                    "schema-id": 0,
                                },
                            },
                            {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": snapshot_id},
                        ],
                    }
                    response = session.post(table_url, json=body, timeout=30)
                    if response.status_code == 200:
                        break
                    assert response.status_code == 409, response.text
                    assert response.json()["error"]["type"] == "CommitFailedException"
                    conflicts[w] += 1
        except Exception as e:  # reported below with the committer's number
            failures.append((w, repr(e)))

    started = time.monotonic()
    threads = [threading.Thread(target=committer, args=(w,)) for w in range(COMMITTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIME_LIMIT_S + 30)
    elapsed = time.monotonic() - started
    assert not failures, failures

    metadata = requests.get(table_url, timeout=30).json()["metadata"]
    expected = {w * 1000 + i + 1 for w in range(COMMITTERS) for i in range(COMMITS_EACH)}
    log = [entry["snapshot-id"] for entry in metadata["snapshot-log"]]
    assert len(log) == len(expected) and set(log) == expected, "every commit exactly once in the snapshot log"

    # The main branch's ancestry is one chain through all of them.
    by_id = {s["snapshot-id"]: s for s in metadata["snapshots"]}
    chain, current = [], metadata["current-snapshot-id"]
    while current is not None:
        chain.append(current)
        current = by_id[current].get("parent-snapshot-id")
    assert sorted(chain) == sorted(expected)
    assert metadata["last-sequence-number"] == len(expected)
    print(f"{len(expected)} commits in {elapsed:.1f}s ({len(expected) / elapsed:.0f}/s), {sum(conflicts)} client retries")
