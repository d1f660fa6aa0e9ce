#!/usr/bin/env python3
"""Static server for the wasm tests (tests/wasm_*.rs): the fixture models over
HTTP with CORS, a stand-in Hugging Face hub, broken models, request counts.

    python3 scripts/serve_fixtures.py [--port 8765]

Routes (every response has `Access-Control-Allow-Origin: *`):

  /m/{tag}/{case}/{file}            tests/fixtures/models/{case}/{file}; `tag` is any
                                    word, so tests get distinct URLs (and cache keys)
  /hub/{owner}/{case}/resolve/main/{file}
                                    the same, in the hub layout (endpoint = /hub)
  /m/{tag}/truncated/{file}         ctc_group_both_shared with model.safetensors cut
                                    to 60 % (a complete HTTP response of a bad file)
  /m/{tag}/cut/{file}               ctc_group_both_shared whose model.safetensors body
                                    stops half way through its Content-Length
  /m/{tag}/badconfig/{file}         ctc_group_both_shared with an unsupported
                                    feat_extract_norm in config.json
  /m/{tag}/huge/{file}              ctc_group_both_shared whose model.safetensors
                                    claims a Content-Length of 3 GB (and sends nothing)
  /m/{tag}/nocors/{file}            ctc_group_both_shared without CORS headers
  /m/{tag}/nopt/{file}              ctc_group_both_shared with no weights at all
  /m/{tag}/spa/{file}               ctc_group_both_shared, and for a missing file an HTML
                                    page with status 200, as dev servers (Vite) and
                                    single-page-app hosts answer
  /m/{tag}/spa_pt/{file}            the same over base_layer_sq3_c2p_separate (no
                                    safetensors: pytorch_model.bin)
  /m/{tag}/spa_none/{file}          an HTML page with status 200 for every file
  /m/{tag}/flip/{file}              ctc_group_both_shared, or base_layer_sq3_c2p_separate
                                    (no vocab, no safetensors: pytorch_model.bin) once
                                    /flip?tag={tag} has been called an odd number of times
  /audio/{name}.wav                 tests/fixtures/models/{name}.wav
  /count?prefix=P[&method=M]        {"count": n}: requests so far whose path starts with P
                                    (and whose method is M: GET or HEAD)
  /flip?tag=T                       swaps the model behind /m/T/flip/
  /outage?tag=T                     toggles an outage: every /m/T/... request answers 503
  /reset                            clears the counts

Model files carry an ETag (a hash of the body), exposed to CORS readers, as
the Hugging Face hub's do. Everything else is 404. Runs until killed; prints
"ready <url>" when listening.
"""

import argparse
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
BASE_CASE = "ctc_group_both_shared"
FLIPPED_CASE = "base_layer_sq3_c2p_separate"

lock = threading.Lock()
requests = []  # (method, path), in order
flipped = set()  # tags whose /m/{tag}/flip/ serves FLIPPED_CASE
outage = set()  # tags whose /m/{tag}/... answer 503


def fixture(case, name):
    if "/" in case or "/" in name or case.startswith(".") or name.startswith("."):
        return None
    path = os.path.join(ROOT, case, name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("SEWD_FIXTURE_LOG"):
            sys.stderr.write("serve_fixtures: " + fmt % args + "\n")

    def send(self, status, body=b"", ctype="application/octet-stream", cors=True, length=None, etag=False):
        self.send_response(status)
        if cors:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Expose-Headers", "Content-Length, ETag")
        if etag:
            self.send_header("ETag", '"%s"' % hashlib.sha1(body).hexdigest()[:16])
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_OPTIONS(self):
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlparse(self.path)
        path = url.path
        query = parse_qs(url.query)
        if path == "/count":
            prefix = query.get("prefix", [""])[0]
            method = query.get("method", [None])[0]
            with lock:
                n = sum(1 for m, p in requests if p.startswith(prefix) and method in (None, m))
            return self.send(200, json.dumps({"count": n}).encode(), "application/json")
        if path == "/reset":
            with lock:
                requests.clear()
            return self.send(200, b"{}", "application/json")
        if path in ("/flip", "/outage"):
            tag = query.get("tag", [""])[0]
            switch = flipped if path == "/flip" else outage
            with lock:
                switch.symmetric_difference_update({tag})
                on = tag in switch
            return self.send(200, json.dumps({path[1:]: on}).encode(), "application/json")
        with lock:
            requests.append((self.command, path))
        parts = path.strip("/").split("/")
        with lock:
            down = len(parts) > 1 and parts[0] == "m" and parts[1] in outage
        if down:
            return self.send(503, b"outage", "text/plain")
        if len(parts) == 2 and parts[0] == "audio" and parts[1].endswith(".wav"):
            p = os.path.join(ROOT, parts[1])
            if "/" not in parts[1] and os.path.isfile(p):
                with open(p, "rb") as f:
                    return self.send(200, f.read(), "audio/wav")
            return self.send(404, b"not found", "text/plain")
        if len(parts) == 6 and parts[0] == "hub" and parts[3:5] == ["resolve", "main"]:
            return self.model_file(parts[2], parts[5])
        if len(parts) == 4 and parts[0] == "m" and parts[2] == "flip":
            with lock:
                case = FLIPPED_CASE if parts[1] in flipped else BASE_CASE
            return self.model_file(case, parts[3])
        if len(parts) == 4 and parts[0] == "m":
            return self.model_file(parts[2], parts[3])
        return self.send(404, b"not found", "text/plain")

    def model_file(self, case, name):
        ctype = "application/json" if name.endswith(".json") else "application/octet-stream"
        if case == "truncated":
            body = fixture(BASE_CASE, name)
            if body is not None and name == "model.safetensors":
                body = body[: len(body) * 6 // 10]
        elif case == "cut":
            body = fixture(BASE_CASE, name)
            if body is not None and name == "model.safetensors":
                # Promise the whole file, send half, close the connection.
                self.send(200, body[: len(body) // 2], ctype, length=len(body))
                self.wfile.flush()
                self.close_connection = True
                return
        elif case == "huge":
            body = fixture(BASE_CASE, name)
            if body is not None and name == "model.safetensors":
                self.send(200, b"", ctype, length=3_000_000_000)
                self.wfile.flush()
                self.close_connection = True
                return
        elif case == "badconfig":
            body = fixture(BASE_CASE, name)
            if body is not None and name == "config.json":
                cfg = json.loads(body)
                cfg["feat_extract_norm"] = "batch"
                body = json.dumps(cfg).encode()
        elif case == "nocors":
            body = fixture(BASE_CASE, name)
            if body is None:
                return self.send(404, b"not found", "text/plain", cors=False)
            return self.send(200, body, ctype, cors=False)
        elif case in ("spa", "spa_pt", "spa_none"):
            body = {"spa": fixture(BASE_CASE, name), "spa_pt": fixture(FLIPPED_CASE, name), "spa_none": None}[case]
            if body is None:
                return self.send(200, b"<!doctype html><title>app</title><p>index.html", "text/html; charset=utf-8")
        elif case == "nopt":
            body = None if name in ("model.safetensors", "pytorch_model.bin") else fixture(BASE_CASE, name)
        else:
            body = fixture(case, name)
        if body is None:
            return self.send(404, f"{case}/{name}: not found".encode(), "text/plain")
        return self.send(200, body, ctype, etag=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(os.environ.get("SEWD_FIXTURE_PORT", "8765")))
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"ready http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
