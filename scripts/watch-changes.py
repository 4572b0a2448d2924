#!/usr/bin/env python3
"""Print every change of a gitstore-api catalogue as it happens (Python 3 standard library only).

    python3 watch-changes.py [BASE_URL] [AFTER]

BASE_URL defaults to http://localhost:4000. With AFTER (a position printed earlier), the
changes since then come first, then live ones: run it again with the last position it
printed to resume where it stopped.
"""
import base64
import json
import os
import socket
import struct
import sys
import urllib.parse

QUERY = """subscription($after: String) {
  catalogChanged(after: $after) {
    position kind entity id changedFields
    node { ... on Product { sku title price } ... on Category { slug } ... on Collection { slug } }
  }
}"""

url = urllib.parse.urlsplit(sys.argv[1] if len(sys.argv) > 1 else "http://localhost:4000")
after = sys.argv[2] if len(sys.argv) > 2 else None
sock = socket.create_connection((url.hostname, url.port or 80))
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(
    f"GET /graphql HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".encode()
)
stream = sock.makefile("rb")
status = stream.readline().decode().strip()
if " 101 " not in status + " ":
    sys.exit(f"the server refused the WebSocket: {status}")
while stream.readline() not in (b"\r\n", b""):
    pass


def send(message):
    data = json.dumps(message).encode()
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    mask = os.urandom(4)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def receive():
    while True:
        head = stream.read(2)
        if len(head) < 2:
            sys.exit("the connection ended")
        size = head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", stream.read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", stream.read(8))
        payload = stream.read(size)
        opcode = head[0] & 0x0F
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            sys.exit(f"closed by the server ({code}): {payload[2:].decode()}")
        if opcode == 0x1:
            return json.loads(payload)


send({"type": "connection_init", "payload": {}})
if receive()["type"] != "connection_ack":
    sys.exit("no connection_ack")
send({"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": {"after": after}}})
while True:
    message = receive()
    if message["type"] == "ping":
        send({"type": "pong"})
    elif message["type"] == "next" and "errors" not in message["payload"]:
        change = message["payload"]["data"]["catalogChanged"]
        print(json.dumps(change), flush=True)
    else:
        sys.exit(json.dumps(message))
