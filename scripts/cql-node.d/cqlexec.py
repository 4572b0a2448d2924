#!/usr/bin/env python3
"""Run CQL statements against a node over the CQL native protocol v4.

Standard library only, so it works wherever python3 does (no cqlsh, no driver).
It speaks just enough of the protocol for test set-up and readiness checks:
STARTUP, QUERY (no bind values, no paging beyond the first page) and the
RESULT kinds void, rows, set_keyspace and schema_change. No authentication,
no TLS, no compression.

    cqlexec.py [--host H] [--port P] [-k KEYSPACE] [--json] [--consistency C]
               [--timeout S] STATEMENT [STATEMENT ...]

Statements run in order on one connection. Output on stdout:
  rows           a tab-separated header line, then one tab-separated line per row
                 (or with --json one JSON object per row)
  schema change  e.g. "CREATED KEYSPACE gitstore"
  void / USE     nothing
A server error prints "error 0xCODE: message" on stderr and exits 1; a
connection problem exits 2.
"""

import argparse
import datetime
import decimal
import ipaddress
import json
import socket
import struct
import sys
import uuid

PROTOCOL_VERSION = 4

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT = 0x07, 0x08

FLAG_TRACING, FLAG_CUSTOM_PAYLOAD, FLAG_WARNING = 0x02, 0x04, 0x08

CONSISTENCY = {
    "ANY": 0x0000, "ONE": 0x0001, "TWO": 0x0002, "THREE": 0x0003,
    "QUORUM": 0x0004, "ALL": 0x0005, "LOCAL_QUORUM": 0x0006,
    "EACH_QUORUM": 0x0007, "SERIAL": 0x0008, "LOCAL_SERIAL": 0x0009,
    "LOCAL_ONE": 0x000A,
}


class CqlError(Exception):
    def __init__(self, code, message):
        super().__init__("error 0x%04X: %s" % (code, message))
        self.code = code


class Reader:
    """Cursor over a response body, with the protocol's [notation] readers."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated frame body")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self):
        return self.take(1)[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        return self.take(self.short()).decode("utf-8")

    def long_string(self):
        return self.take(self.int()).decode("utf-8")

    def string_list(self):
        return [self.string() for _ in range(self.short())]

    def bytes(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def short_bytes(self):
        return self.take(self.short())


# --- types -----------------------------------------------------------------

def read_type(r):
    """[option] describing a column type, as a nested tuple (id, params...)."""
    tid = r.short()
    if tid == 0x0000:                      # custom
        return (tid, r.string())
    if tid in (0x0020, 0x0022):            # list, set
        return (tid, read_type(r))
    if tid == 0x0021:                      # map
        return (tid, read_type(r), read_type(r))
    if tid == 0x0030:                      # user defined type
        r.string()                         # keyspace
        r.string()                         # type name
        fields = []
        for _ in range(r.short()):
            name = r.string()
            fields.append((name, read_type(r)))
        return (tid, fields)
    if tid == 0x0031:                      # tuple
        return (tid, [read_type(r) for _ in range(r.short())])
    return (tid,)


def _zigzag_vint(data, pos):
    """Unsigned vint as used by the duration type, zig-zag decoded."""
    first = data[pos]
    extra = 0
    while extra < 8 and first & (0x80 >> extra):
        extra += 1
    value = first & (0xFF >> extra) if extra < 8 else 0
    for i in range(extra):
        value = (value << 8) | data[pos + 1 + i]
    return (value >> 1) ^ -(value & 1), pos + 1 + extra


def decode(ctype, raw):
    if raw is None:
        return None
    tid = ctype[0]
    if tid in (0x0001, 0x000D):            # ascii, varchar
        return raw.decode("utf-8")
    if tid in (0x0002, 0x0005, 0x0012):    # bigint, counter, time (ns)
        return struct.unpack(">q", raw)[0]
    if tid == 0x0009:                      # int
        return struct.unpack(">i", raw)[0]
    if tid == 0x0013:                      # smallint
        return struct.unpack(">h", raw)[0]
    if tid == 0x0014:                      # tinyint
        return struct.unpack(">b", raw)[0]
    if tid == 0x000E:                      # varint
        return int.from_bytes(raw, "big", signed=True)
    if tid == 0x0006:                      # decimal
        scale = struct.unpack(">i", raw[:4])[0]
        unscaled = int.from_bytes(raw[4:], "big", signed=True)
        return decimal.Decimal(unscaled).scaleb(-scale)
    if tid == 0x0004:                      # boolean
        return raw != b"\x00"
    if tid == 0x0007:                      # double
        return struct.unpack(">d", raw)[0]
    if tid == 0x0008:                      # float
        return struct.unpack(">f", raw)[0]
    if tid == 0x000B:                      # timestamp (ms since epoch, UTC)
        ms = struct.unpack(">q", raw)[0]
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (epoch + datetime.timedelta(milliseconds=ms)).isoformat()
    if tid == 0x0011:                      # date (days, 2^31 = epoch)
        days = struct.unpack(">I", raw)[0] - (1 << 31)
        return (datetime.date(1970, 1, 1) + datetime.timedelta(days=days)).isoformat()
    if tid in (0x000C, 0x000F):            # uuid, timeuuid
        return str(uuid.UUID(bytes=raw))
    if tid == 0x0010:                      # inet
        return str(ipaddress.ip_address(raw))
    if tid == 0x0015 or (tid == 0x0000 and ctype[1].endswith(".DurationType")):
        # duration (a custom type in protocol v4): months, days, nanoseconds
        months, pos = _zigzag_vint(raw, 0)
        days, pos = _zigzag_vint(raw, pos)
        nanos, _ = _zigzag_vint(raw, pos)
        return "%dmo%dd%dns" % (months, days, nanos)
    if tid in (0x0020, 0x0022, 0x0021):    # list, set, map
        r = Reader(raw)
        n = r.int()
        if tid == 0x0021:
            return {_key(decode(ctype[1], r.bytes())): decode(ctype[2], r.bytes())
                    for _ in range(n)}
        return [decode(ctype[1], r.bytes()) for _ in range(n)]
    if tid == 0x0030:                      # UDT: fields in order, may be cut short
        r = Reader(raw)
        out = {}
        for name, ftype in ctype[1]:
            if r.pos >= len(raw):
                break
            out[name] = decode(ftype, r.bytes())
        return out
    if tid == 0x0031:                      # tuple
        r = Reader(raw)
        return [decode(t, r.bytes()) for t in ctype[1]]
    return "0x" + raw.hex()                # blob, custom and anything unknown


def _key(value):
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def render(value):
    """One value as text for the tab-separated output."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


# --- connection ---------------------------------------------------------------

class Connection:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stream = 0
        self.warnings = []

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            buf += chunk
        return bytes(buf)

    def request(self, opcode, body):
        self.stream = (self.stream + 1) % 0x7FFF
        header = struct.pack(">BBhBi", PROTOCOL_VERSION, 0, self.stream, opcode, len(body))
        self.sock.sendall(header + body)
        while True:
            version, flags, stream, op, length = struct.unpack(">BBhBi", self._recv_exact(9))
            data = self._recv_exact(length)
            if version & 0x7F != PROTOCOL_VERSION:
                raise ConnectionError("server answered with protocol version %d" % (version & 0x7F))
            if stream == self.stream:
                break                      # anything else is not ours (events use -1)
        r = Reader(data)
        if flags & FLAG_TRACING:
            r.take(16)
        if flags & FLAG_WARNING:
            self.warnings.extend(r.string_list())
        if flags & FLAG_CUSTOM_PAYLOAD:
            for _ in range(r.short()):
                r.string()
                r.bytes()
        if op == OP_ERROR:
            code = r.int()
            raise CqlError(code, r.string())
        return op, r

    def startup(self):
        options = {"CQL_VERSION": "3.0.0"}
        body = struct.pack(">H", len(options))
        for k, v in options.items():
            body += _string(k) + _string(v)
        op, _ = self.request(OP_STARTUP, body)
        if op == OP_AUTHENTICATE:
            raise ConnectionError("the server requires authentication, which this helper does not do")
        if op != OP_READY:
            raise ConnectionError("unexpected answer 0x%02X to STARTUP" % op)

    def query(self, cql, consistency):
        q = cql.encode("utf-8")
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", consistency, 0)
        op, r = self.request(OP_QUERY, body)
        if op != OP_RESULT:
            raise ConnectionError("unexpected answer 0x%02X to QUERY" % op)
        return parse_result(r)


def _string(s):
    b = s.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def parse_result(r):
    """Returns ("void",), ("keyspace", name), ("schema", text) or ("rows", names, rows)."""
    kind = r.int()
    if kind == 0x0001:
        return ("void",)
    if kind == 0x0003:
        return ("keyspace", r.string())
    if kind == 0x0005:
        change, target = r.string(), r.string()
        if target == "KEYSPACE":
            what = r.string()
        else:
            what = r.string() + "." + r.string()
            if target in ("FUNCTION", "AGGREGATE"):
                what += "(" + ",".join(r.string_list()) + ")"
        return ("schema", "%s %s %s" % (change, target, what))
    if kind == 0x0002:
        flags = r.int()
        ncols = r.int()
        if flags & 0x0002:                 # has_more_pages: paging state follows
            r.bytes()
        if flags & 0x0004:
            raise ValueError("result without metadata")
        global_spec = flags & 0x0001
        if global_spec:
            r.string()
            r.string()
        names, types = [], []
        for _ in range(ncols):
            if not global_spec:
                r.string()
                r.string()
            names.append(r.string())
            types.append(read_type(r))
        rows = []
        for _ in range(r.int()):
            rows.append([decode(t, r.bytes()) for t in types])
        return ("rows", names, rows)
    raise ValueError("unsupported result kind %d" % kind)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run CQL statements over the native protocol v4.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9042)
    p.add_argument("-k", "--keyspace", help="USE this keyspace first")
    p.add_argument("--consistency", default="ONE", choices=sorted(CONSISTENCY))
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout in seconds")
    p.add_argument("--json", action="store_true", help="print rows as JSON objects, one a line")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("statements", nargs="+", metavar="STATEMENT")
    args = p.parse_args(argv)

    try:
        conn = Connection(args.host, args.port, args.timeout)
    except OSError as e:
        print("cqlexec: cannot connect to %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 2

    def emit(line):
        if not args.quiet:
            print(line, flush=True)

    try:
        conn.startup()
        statements = list(args.statements)
        if args.keyspace:
            statements.insert(0, 'USE "%s"' % args.keyspace.replace('"', '""'))
        for cql in statements:
            res = conn.query(cql, CONSISTENCY[args.consistency])
            if res[0] == "schema":
                emit(res[1])
            elif res[0] == "rows":
                names, rows = res[1], res[2]
                if args.json:
                    for row in rows:
                        emit(json.dumps(dict(zip(names, row)), default=str))
                else:
                    emit("\t".join(names))
                    for row in rows:
                        emit("\t".join(render(v) for v in row))
    except CqlError as e:
        print("cqlexec: %s" % e, file=sys.stderr)
        return 1
    except (OSError, ConnectionError, ValueError) as e:
        print("cqlexec: %s:%d: %s" % (args.host, args.port, e), file=sys.stderr)
        return 2
    finally:
        conn.close()
        for w in conn.warnings:
            print("cqlexec: warning: %s" % w, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
