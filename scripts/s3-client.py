#!/usr/bin/env python3
"""A minimal S3 client for scripts/s3 (standard library only, AWS SigV4, path-style).

    s3-client.py ping                      exit 0 once ListBuckets answers 200
    s3-client.py mkbucket NAME             create a bucket (an existing one of ours is fine)
    s3-client.py race-check [--writers 16] [--rounds 5] [--bucket NAME]
        each round, WRITERS threads PUT the same new key at once with `If-None-Match: *`;
        exactly one must succeed (200) and the others be refused (412 or 409), and a GET
        must return the winner's body. Exit 1 (with what happened) otherwise.

Endpoint and credentials come from the environment: AWS_ENDPOINT_URL (http://host:port),
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import threading
import time
import urllib.parse
import uuid


class S3:
    """Signs and sends single requests to one S3 endpoint."""

    def __init__(self, endpoint, region, access_key, secret_key, timeout=30):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http":
            raise SystemExit(f"s3-client: only http:// endpoints are supported, got {endpoint!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key
        self.timeout = timeout

    @classmethod
    def from_env(cls):
        missing = [
            v
            for v in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if not os.environ.get(v)
        ]
        if missing:
            raise SystemExit(f"s3-client: set {', '.join(missing)} (see `scripts/s3 env`)")
        return cls(
            os.environ["AWS_ENDPOINT_URL"],
            os.environ.get("AWS_REGION", "us-east-1"),
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
        )

    def connect(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        return conn

    def signed_headers(self, method, path, body, extra):
        """SigV4 headers for METHOD PATH (already URI-encoded, no query) with BODY."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "host": f"{self.host}:{self.port}",
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        headers.update({k.lower(): v for k, v in extra.items()})
        names = sorted(headers)
        canonical = "\n".join(
            [
                method,
                path,
                "",
                "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                ";".join(names),
                payload_hash,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers

    def send(self, conn, method, path, body=b"", extra=None):
        """Sends one request on CONN; returns (status, body)."""
        path = urllib.parse.quote(path, safe="/-_.~")
        conn.request(method, path, body=body, headers=self.signed_headers(method, path, body, extra or {}))
        resp = conn.getresponse()
        return resp.status, resp.read()

    def request(self, method, path, body=b"", extra=None):
        conn = self.connect()
        try:
            return self.send(conn, method, path, body, extra)
        finally:
            conn.close()


def mkbucket(s3, name):
    status, body = s3.request("PUT", f"/{name}")
    if status == 200:
        print(f"s3-client: created bucket {name}", file=sys.stderr)
    elif status == 409 and b"BucketAlreadyOwnedByYou" in body:
        print(f"s3-client: bucket {name} exists", file=sys.stderr)
    else:
        raise SystemExit(f"s3-client: creating bucket {name} failed: HTTP {status} {body[:300]!r}")


def race_round(s3, bucket, key, writers):
    """One round; returns a list of problems (empty if exactly one writer won)."""
    conns = [s3.connect() for _ in range(writers)]
    bodies = [f"writer {i} {uuid.uuid4()}".encode() for i in range(writers)]
    results = [None] * writers
    gate = threading.Barrier(writers)

    def writer(i):
        try:
            gate.wait()
            results[i] = s3.send(conns[i], "PUT", f"/{bucket}/{key}", bodies[i], {"If-None-Match": "*"})
        except Exception as e:  # a refused connection or a reset counts as a failed check
            results[i] = (None, repr(e).encode())

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()

    problems = []
    winners = [i for i, (status, _) in enumerate(results) if status == 200]
    refused = [i for i, (status, _) in enumerate(results) if status in (409, 412)]
    others = [(i, results[i]) for i in range(writers) if i not in winners and i not in refused]
    if len(winners) != 1:
        problems.append(f"{len(winners)} writers succeeded (expected exactly 1)")
    for i, (status, body) in others:
        problems.append(f"writer {i}: unexpected answer {status} {body[:200]!r}")
    status, stored = s3.request("GET", f"/{bucket}/{key}")
    if status != 200:
        problems.append(f"GET after the race: HTTP {status}")
    elif len(winners) == 1 and stored != bodies[winners[0]]:
        problems.append(f"stored body {stored[:60]!r} is not the winner's")
    s3.request("DELETE", f"/{bucket}/{key}")
    return problems, len(winners), len(refused)


def race_check(s3, bucket, writers, rounds):
    mkbucket(s3, bucket)
    failed = False
    for r in range(1, rounds + 1):
        key = f"race-check/{uuid.uuid4()}"
        started = time.monotonic()
        problems, won, refused = race_round(s3, bucket, key, writers)
        ms = (time.monotonic() - started) * 1000
        verdict = "ok" if not problems else "FAILED"
        print(
            f"s3-client: race round {r}/{rounds}: {won} won, {refused} refused of {writers} ({ms:.0f} ms) {verdict}",
            file=sys.stderr,
        )
        for p in problems:
            print(f"s3-client:   {p}", file=sys.stderr)
        failed = failed or bool(problems)
    s3.request("DELETE", f"/{bucket}")
    return not failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("ping")
    mk = sub.add_parser("mkbucket")
    mk.add_argument("name")
    race = sub.add_parser("race-check")
    race.add_argument("--writers", type=int, default=16)
    race.add_argument("--rounds", type=int, default=5)
    race.add_argument("--bucket", default="hourlake-race-check")
    args = parser.parse_args()

    s3 = S3.from_env()
    if args.cmd == "ping":
        try:
            status, body = s3.request("GET", "/")
        except OSError as e:
            print(f"s3-client: {e}", file=sys.stderr)
            sys.exit(1)
        if status != 200:
            print(f"s3-client: ListBuckets answered HTTP {status} {body[:300]!r}", file=sys.stderr)
            sys.exit(1)
    elif args.cmd == "mkbucket":
        mkbucket(s3, args.name)
    elif args.cmd == "race-check":
        sys.exit(0 if race_check(s3, args.bucket, args.writers, args.rounds) else 1)


if __name__ == "__main__":
    main()
