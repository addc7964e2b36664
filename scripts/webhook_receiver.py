"""A Standard Webhooks receiver for the tests: every request is verified with the reference library
(`standardwebhooks.Webhook(secret).verify(body, headers)`, PyPI `standardwebhooks`).

`python3 scripts/webhook_receiver.py` serves on a free loopback port and prints `http://127.0.0.1:PORT`.

- `POST /_config` `{"secret": "whsec_…", "script": ["500", "timeout", "ok", …]}`: the one secret it
  verifies with from now on (a receiver holds the old or the new secret during a rotation), and answers to
  give to the next webhooks (default `ok`; `timeout` sleeps 3 s, then answers 200).
- `GET /_received`: every webhook so far, `[{"id", "verified", "error", "status"}]`.
- `POST` anything else: a webhook. Unverified: 401. Verified: the next scripted answer.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

STATE = {"secret": None, "script": [], "received": []}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/_received":
            return self.answer(404)
        with LOCK:
            body = json.dumps(STATE["received"]).encode()
        self.answer(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_config":
            config = json.loads(body)
            with LOCK:
                if "secret" in config:
                    STATE["secret"] = config["secret"]
                STATE["script"].extend(config.get("script", []))
            return self.answer(204)
        headers = {k: v for (k, v) in self.headers.items()}
        with LOCK:
            secret = STATE["secret"]
        record = {"id": headers.get("webhook-id"), "verified": False, "error": None, "status": 401}
        try:
            Webhook(secret).verify(body, headers)
            record["verified"] = True
        except Exception as e:  # the library's verdict, recorded for the test
            record["error"] = f"{type(e).__name__}: {e}"
        step = "ok"
        if record["verified"]:
            with LOCK:
                step = STATE["script"].pop(0) if STATE["script"] else "ok"
            record["status"] = 500 if step == "500" else 200
        with LOCK:
            STATE["received"].append(record)
        if step == "timeout":
            time.sleep(3)
        self.answer(record["status"])


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
