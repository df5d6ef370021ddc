#!/usr/bin/env python3
"""An HTTP/3 client for Loom's tests, on aioquic (a QUIC and HTTP/3 implementation nobody here
wrote). One QUIC connection; requests are read from stdin, one JSON object per line:

    {"method": "GET", "path": "/x", "headers": {"x": "y"}, "body_size": 0, "parallel": 1}

and for each request (or each of `parallel` copies, sent at once on the connection) one JSON
line is printed: {"status", "headers", "body" (first 200 bytes, text), "body_size", "sha256"}.
A line "quit" or the end of stdin closes the connection. Usage:

    h3client.py HOST PORT --server-name NAME [--ca FILE] [--authority HOST[:PORT]]
"""

import argparse
import asyncio
import hashlib
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}

    def quic_event_received(self, event: QuicEvent):
        for e in self.h3.handle_event(event):
            waiter = self.streams.get(getattr(e, "stream_id", None))
            if waiter is None:
                continue
            if isinstance(e, HeadersReceived):
                if waiter["headers"] is None:
                    waiter["headers"] = e.headers
                else:
                    waiter["trailers"] = e.headers
            elif isinstance(e, DataReceived):
                waiter["body"].extend(e.data)
            if getattr(e, "stream_ended", False):
                waiter["done"].set_result(None)

    async def request(self, method, authority, path, headers, body):
        stream_id = self._quic.get_next_available_stream_id()
        waiter = {"headers": None, "trailers": None, "body": bytearray(),
                  "done": self._loop.create_future()}
        self.streams[stream_id] = waiter
        fields = [(b":method", method.encode()), (b":scheme", b"https"),
                  (b":authority", authority.encode()), (b":path", path.encode())]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if body:
            fields.append((b"content-length", str(len(body)).encode()))
        self.h3.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()
        await asyncio.wait_for(waiter["done"], timeout=30)
        del self.streams[stream_id]
        head = {k.decode(): v.decode() for k, v in waiter["headers"] or []}
        body = bytes(waiter["body"])
        return {
            "status": int(head.pop(":status", "0")),
            "headers": head,
            "trailers": {k.decode(): v.decode() for k, v in waiter["trailers"] or []},
            "body": body[:200].decode(errors="replace"),
            "body_size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--server-name", required=True)
    p.add_argument("--authority")
    p.add_argument("--ca")
    a = p.parse_args()
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name=a.server_name)
    if a.ca:
        config.load_verify_locations(a.ca)
    authority = a.authority or a.server_name
    async with connect(a.host, a.port, configuration=config, create_protocol=Client) as client:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                break
            r = json.loads(line)
            body = b"x" * r.get("body_size", 0)
            calls = [client.request(r.get("method", "GET"), r.get("authority", authority),
                                    r["path"], r.get("headers", {}), body)
                     for _ in range(r.get("parallel", 1))]
            for result in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(result, Exception):
                    result = {"error": repr(result)}
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # the test reads this line
        print(json.dumps({"error": repr(e)}), flush=True)
        sys.exit(1)
