"""A reverse proxy in front of the AWS emulator that fails a set share of requests the ways AWS
fails (IAM Throttling, S3 503 SlowDown, 500 InternalError, connection resets before the request
reaches the emulator and after it ran there, so that the answer is lost), answers another share
slowly (successfully), and can record every request it saw.

Test-only code (tests/faults.rs and tests/tenants.rs start it). Standard library only.

    faultproxy.py --target http://127.0.0.1:5000 [--rate 0.2] [--slow-rate 0.05] [--slow 1.5]
                  [--seed 7] [--log requests.jsonl]

Each request the proxy can attribute to an AWS service draws one random number: below `rate` it
fails (one of the five failure kinds, picked evenly), below `rate + slow-rate` it is answered
after `slow` seconds (and succeeds), otherwise it passes untouched. Failures and slow answers are
counted apart, so "20% failed" means failed, not "failed or slow".

Prints `listening on http://127.0.0.1:PORT` once ready.

- `GET /__faults` answers the counts so far, as JSON, without touching the emulator.
- `GET /__force?match=TEXT&count=N` makes the next N requests that name TEXT (in the path, or in
  a `*Name`/`*Arn` parameter of the form) fail with a 500 InternalError, whatever the draw;
  these are counted as `forced`, apart from the random failures.
- `--worst-shares LOW HIGH`: no proxy; prints (JSON) the largest distance of the failed and
  slow shares from their rates over the first n draws of the seeded stream, for n in LOW..HIGH.
  Draws are taken in arrival order, so over n requests the shares are exactly those of the
  stream's first n draws.
- `--log FILE`: one JSON line per request, written as it arrives: `t` (Unix time, seconds),
  `service`, `method`, `path`, `action`, `names` (the bucket of an S3 path and every
  `*Name`/`*Arn` form parameter) and `outcome` (`pass`, `slow`, a failure kind, or `forced`).
"""

import argparse
import http.client
import http.server
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

FAILURES = ["throttle", "slowdown", "internal", "reset-before", "reset-after"]
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[0-9]{8}/[^/]+/([a-z0-9-]+)/aws4_request")


def service_of(headers, body):
    """The AWS service a request is for: the SigV4 credential scope says it; unsigned requests
    (AssumeRoleWithWebIdentity) are STS."""
    match = CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    if match:
        return match.group(1)
    if b"Action=AssumeRoleWithWebIdentity" in body:
        return "sts"
    return "unknown"


def describe(service, path, headers, body):
    """(action, names) of a request: the form's Action, and the resources it names."""
    action, names = "", []
    query = urllib.parse.urlsplit(path).query
    form = urllib.parse.parse_qsl(query)
    if headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        form += urllib.parse.parse_qsl(body.decode("utf-8", "replace"))
    for key, value in form:
        if key == "Action":
            action = value
        elif key.endswith("Name") or key.endswith("Arn"):
            names.append(value)
    if service == "s3":
        bucket = urllib.parse.unquote(urllib.parse.urlsplit(path).path).lstrip("/").split("/", 1)[0]
        if bucket:
            names.append(bucket)
    return action, names


def error_answer(kind, service):
    """(status, content type, body) of an AWS error in the service's own protocol."""
    if kind == "throttle" and service in ("iam", "sts"):
        status, code, message = 400, "Throttling", "Rate exceeded"
    elif kind == "throttle":
        status, code, message = 503, "SlowDown", "Please reduce your request rate."
    elif kind == "slowdown" and service == "s3":
        status, code, message = 503, "SlowDown", "Please reduce your request rate."
    elif kind == "slowdown":
        status, code, message = 503, "ServiceUnavailable", "Service is unable to handle request."
    else:
        status, code, message = 500, "InternalError", "We encountered an internal error. Please try again."
    if service == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
        return status, "application/xml", body.encode()
    if service == "eks":
        kind_header = "ThrottlingException" if code == "Throttling" else "ServerException"
        return status, "application/json", json.dumps({"__type": kind_header, "message": message}).encode()
    body = (
        f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>faultproxy</RequestId></ErrorResponse>"
    )
    return status, "text/xml", body.encode()


def draw(rng, rate, slow_rate):
    """One request's fate: a failure kind, `slow` or `pass` (consumes the seeded stream)."""
    x = rng.random()
    if x < rate:
        return rng.choice(FAILURES)
    if x < rate + slow_rate:
        return "slow"
    return "pass"


def worst_shares(seed, rate, slow_rate, low, high):
    """The largest distance of the failed and slow shares from `rate` and `slow_rate` over the
    first n draws of the seeded stream, for every n from `low` to `high`."""
    rng = random.Random(seed)
    failed = slow = 0
    worst = {"failed": 0.0, "slow": 0.0}
    for n in range(1, high + 1):
        outcome = draw(rng, rate, slow_rate)
        failed += outcome in FAILURES
        slow += outcome == "slow"
        if n >= low:
            worst["failed"] = max(worst["failed"], abs(failed / n - rate))
            worst["slow"] = max(worst["slow"], abs(slow / n - slow_rate))
    return worst


class Faults:
    def __init__(self, rate, slow_rate, seed, slow, log_path):
        self.rate = rate
        self.slow_rate = slow_rate
        self.slow = slow
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.forced = []  # [match, remaining]
        self.log = open(log_path, "a", buffering=1) if log_path else None
        self.counts = {
            "requests": 0,
            "unattributed": 0,
            "passed": 0,
            "failed": 0,
            "slow": 0,
            "forced": 0,
            "by_kind": {},
            "by_service": {},
        }

    def force(self, match, count):
        with self.lock:
            self.forced.append([match, count])

    def pick(self, service, method, path, action, names):
        """The outcome of this request: `pass`, `slow`, `forced` or a failure kind."""
        with self.lock:
            counts = self.counts
            counts["requests"] += 1
            outcome = "pass"
            forced = next(
                (f for f in self.forced if f[1] > 0 and (f[0] in path or any(f[0] in n for n in names))),
                None,
            )
            if forced is not None:
                forced[1] -= 1
                outcome = "forced"
                counts["forced"] += 1
            elif service == "unknown":
                counts["unattributed"] += 1
            else:
                outcome = draw(self.random, self.rate, self.slow_rate)
                if outcome in FAILURES:
                    counts["failed"] += 1
                    counts["by_kind"][outcome] = counts["by_kind"].get(outcome, 0) + 1
                elif outcome == "slow":
                    counts["slow"] += 1
                else:
                    counts["passed"] += 1
                per = counts["by_service"].setdefault(service, {"requests": 0, "failed": 0, "slow": 0})
                per["requests"] += 1
                if outcome in FAILURES:
                    per["failed"] += 1
                elif outcome == "slow":
                    per["slow"] += 1
            if self.log:
                entry = {"t": time.time(), "service": service, "method": method, "path": path,
                         "action": action, "names": names, "outcome": outcome}
                self.log.write(json.dumps(entry) + "\n")
            return outcome


def handler(target, faults):
    target = urllib.parse.urlsplit(target)

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reset(self):
            # SO_LINGER 0: close with a TCP RST, as a dropped connection looks to the client.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            # shutdown() tears the connection down now; close() alone would wait for the
            # handler's file objects over the same socket to be closed.
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.connection.close()

        def answer(self, status, headers, body):
            self.send_response_only(status)
            for name, value in headers:
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            if self.command == "HEAD":
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, body):
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            # The Host header is passed on as signed: the emulator checks signatures over it.
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            return response.status, response.getheaders(), data

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__faults":
                with faults.lock:
                    data = json.dumps(faults.counts).encode()
                return self.answer(200, [("Content-Type", "application/json")], data)
            if self.path.startswith("/__force?"):
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                faults.force(params["match"], int(params["count"]))
                return self.answer(200, [("Content-Type", "text/plain")], b"ok\n")
            service = service_of(self.headers, body)
            action, names = describe(service, self.path, self.headers, body)
            kind = faults.pick(service, self.command, self.path, action, names)
            if kind == "reset-before":
                return self.reset()
            if kind in ("throttle", "slowdown", "internal", "forced"):
                status, content_type, data = error_answer("internal" if kind == "forced" else kind, service)
                return self.answer(status, [("Content-Type", content_type)], data)
            if kind == "slow":
                time.sleep(faults.slow)
            status, headers, data = self.forward(body)
            if kind == "reset-after":
                # The emulator did the work; the client never hears of it.
                return self.reset()
            self.answer(status, headers, data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any

    return Proxy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--rate", type=float, default=0.2, help="share of requests that fail")
    parser.add_argument("--slow-rate", type=float, default=0.0, help="share answered slowly")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--slow", type=float, default=1.5, help="seconds a slow answer takes")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--worst-shares", nargs=2, type=int, metavar=("LOW", "HIGH"),
                        help="print how far the shares of the seeded stream stray over LOW..HIGH requests, and exit")
    args = parser.parse_args()
    if args.worst_shares:
        low, high = args.worst_shares
        print(json.dumps(worst_shares(args.seed, args.rate, args.slow_rate, low, high)))
        return 0
    faults = Faults(args.rate, args.slow_rate, args.seed, args.slow, args.log)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.target, faults))
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
