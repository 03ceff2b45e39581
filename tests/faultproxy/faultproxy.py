"""A reverse proxy in front of the AWS emulator that fails a set share of requests, the ways AWS
fails: IAM Throttling, S3 503 SlowDown, 500 InternalError, connection resets (before the request
reaches the emulator, and after it ran there, so the answer is lost), and slow answers.

Test-only code (tests/faults.rs starts it). Standard library only.

    faultproxy.py --target http://127.0.0.1:5000 --rate 0.2 [--seed 7] [--slow 2.0]

Prints `listening on http://127.0.0.1:PORT` once ready. `GET /__faults` answers the counts so
far (by kind and by service), as JSON, without touching the emulator.
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

KINDS = ["throttle", "slowdown", "internal", "reset-before", "reset-after", "slow"]
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


class Faults:
    def __init__(self, rate, seed, slow):
        self.rate = rate
        self.slow = slow
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "injected": 0, "by_kind": {}, "by_service": {}}

    def pick(self, service):
        """None (pass through) or the kind of fault for this request."""
        with self.lock:
            self.counts["requests"] += 1
            if service == "unknown" or self.random.random() >= self.rate:
                return None
            kind = self.random.choice(KINDS)
            self.counts["injected"] += 1
            self.counts["by_kind"][kind] = self.counts["by_kind"].get(kind, 0) + 1
            key = f"{service}:{kind}"
            self.counts["by_service"][key] = self.counts["by_service"].get(key, 0) + 1
            return kind


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
            service = service_of(self.headers, body)
            kind = faults.pick(service)
            if kind == "reset-before":
                return self.reset()
            if kind in ("throttle", "slowdown", "internal"):
                status, content_type, data = error_answer(kind, service)
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
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--slow", type=float, default=2.0, help="seconds a slow answer takes")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    faults = Faults(args.rate, args.seed, args.slow)
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
