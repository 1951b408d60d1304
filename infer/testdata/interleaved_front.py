# One thread serving two requests interleaved: it reads request A, then
# request B, then makes A's back-end call and B's. The thread's last request
# says nothing about which call is whose: inference must leave both unlinked.
import socket
import sys

PORT, BACK_HOST, BACK_PORT = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def read_request(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buf += chunk
    for line in buf.split(b"\r\n"):
        if line.lower().startswith(b"x-request-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def call_back(rid):
    c = socket.create_connection((BACK_HOST, BACK_PORT), timeout=10)
    c.sendall(("GET /work HTTP/1.1\r\nHost: back\r\nX-Request-Id: %s\r\nConnection: close\r\n\r\n" % rid).encode())
    data = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.close()
    return data.split(b"\r\n\r\n", 1)[-1].decode()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", PORT))
srv.listen(64)
while True:
    pending = []
    while len(pending) < 2:
        conn, _ = srv.accept()
        rid = read_request(conn)
        if rid is None:
            conn.close()
            continue
        pending.append((conn, rid))
    for conn, rid in pending:
        got = call_back(rid)
        out = ("front %s %s" % (rid, got)).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(out) + out)
        conn.close()
        print("served", rid, flush=True)
