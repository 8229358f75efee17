#!/usr/bin/python3
"""bench/lib/enqueue.py PORT TOKEN COUNT [CLIENTS] [BYTES]: POSTs COUNT messages of about BYTES
bytes of text (default 2048) to mailtrail's /v1/messages over CLIENTS keep-alive connections
(default 8), each from its own thread. Prints "<accepted> <elapsed_ms>"; exits 1 if any answer
was not 202 (the first such answer goes to stderr). Standard library only."""
import http.client
import json
import sys
import threading
import time

port, token, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 8
size = int(sys.argv[5]) if len(sys.argv) > 5 else 2048

line = "The quick brown fox jumps over the lazy dog, message body for the outbox bench.\n"
text = (line * (size // len(line) + 1))[:size]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
accepted = [0] * clients
failure = []


def worker(k, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(n):
        body = json.dumps({"to": ["rcpt@bench.example"], "subject": f"bench {k}-{i}", "text": text})
        try:
            conn.request("POST", "/v1/messages", body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            failure.append(f"client {k}: {e!r}")
            return
        if resp.status != 202:
            failure.append(f"client {k}: {resp.status} {data[:300]!r}")
            return
        accepted[k] += 1


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(k, count // clients + (k < count % clients)))
           for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = int((time.monotonic() - start) * 1000)
print(sum(accepted), elapsed)
if failure:
    print("enqueue: " + failure[0], file=sys.stderr)
    sys.exit(1)
