#!/usr/bin/env python3
"""A webhook receiver for tests/webhooks.rs that verifies every delivery with the Standard
Webhooks reference library (`standardwebhooks` from PyPI), which firesfu did not write.

    receiver.py PORT DIR

Endpoints are paths `/<behaviour>/<name>`; the secret of `<name>` is read from
`DIR/secrets.json` ({name: "whsec_…"}) at each request. Behaviours:
  ok        answers 204
  fail3     answers 500 to the first 3 attempts of each webhook-id, then 204
  hang      never answers in time (sleeps 120 s)
  slow-MS   answers 204 after MS milliseconds
  flaky     answers per DIR/flaky-<name> ("ok" or "fail"), default fail
Every request is appended to DIR/deliveries.jsonl: name, webhook-id, verified, the event, the
attempt number of that id at this endpoint, the status answered, when it arrived (Unix ms).
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
DIR = sys.argv[2]
LOCK = threading.Lock()
ATTEMPTS = {}


def secret(name):
    try:
        with open(os.path.join(DIR, "secrets.json")) as f:
            return json.load(f).get(name)
    except (OSError, ValueError):
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        arrived = int(time.time() * 1000)
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length).decode()
        parts = self.path.strip("/").split("/")
        behaviour, name = (parts + [""])[:2]
        headers = {k.lower(): v for k, v in self.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        verified, event, error = False, None, None
        key = secret(name)
        try:
            if key is None:
                raise WebhookVerificationError("no secret for " + name)
            event = Webhook(key).verify(body, headers)
            verified = True
        except (WebhookVerificationError, ValueError) as e:
            error = str(e)
        with LOCK:
            attempt = ATTEMPTS.get((name, webhook_id), 0) + 1
            ATTEMPTS[(name, webhook_id)] = attempt
            status = 204
            if not verified:
                status = 400
            elif behaviour == "fail3" and attempt <= 3:
                status = 500
            elif behaviour == "flaky":
                try:
                    with open(os.path.join(DIR, "flaky-" + name)) as f:
                        status = 204 if f.read().strip() == "ok" else 503
                except OSError:
                    status = 503
            with open(os.path.join(DIR, "deliveries.jsonl"), "a") as f:
                f.write(json.dumps({"name": name, "id": webhook_id, "verified": verified,
                                    "error": error, "event": event, "attempt": attempt,
                                    "status": status, "arrived": arrived}) + "\n")
        if behaviour == "hang":
            time.sleep(120)
        elif behaviour.startswith("slow-"):
            time.sleep(int(behaviour[5:]) / 1000)
        try:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:
            pass


ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
