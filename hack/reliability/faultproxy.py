#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 proxy for the reliability suite (loopback only).

Each request in front of the upstream server (moto S3, OpenBao) takes one action:
  pass      forward it
  500, 503  answer with that status (an S3-style XML error)
  403       answer 403 AccessDenied
  slowdown  answer 503 SlowDown
  reset     close the connection with a TCP RST, before any response
  truncate  forward it, send half of the response, then reset (a body cut short)
  stall     read the request and send nothing for 120 s
  slow      forward it and send the response at --slow-rate bytes/s (a slow read)
  slowup    read the request body at --slow-rate bytes/s (a slow upload), then forward it

The action is the first that applies of: a --rule whose METHOD and path substring match
(e.g. "PUT:/snapshots/=503"), then the next entry of --schedule (one-shot), then the next entry of
--cycle (repeated for ever), else pass. Every request is logged to --log as "ACTION METHOD PATH".
The port is printed on stdout once listening. The proxy exits when its parent process exits.
"""
import argparse
import os
import socket
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--upstream", required=True, help="host:port")
p.add_argument("--schedule", default="")
p.add_argument("--cycle", default="")
p.add_argument("--rule", action="append", default=[])
p.add_argument("--log", required=True)
p.add_argument("--slow-rate", type=int, default=4 << 20)
p.add_argument("--port", type=int, default=0)
a = p.parse_args()
up_host, up_port = a.upstream.rsplit(":", 1)
up_port = int(up_port)
schedule = [s for s in a.schedule.split(",") if s]
cycle = [s for s in a.cycle.split(",") if s]
rules = []
for r in a.rule:
    cond, _, action = r.partition("=")
    method, _, sub = cond.partition(":")
    rules.append((method.upper(), sub, action))
lock = threading.Lock()
counter = [0]


def recv_exact_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


def respond(conn, status, reason, code):
    body = b"<Error><Code>%s</Code><Message>injected by the reliability proxy</Message></Error>" % code
    conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % (status, reason, len(body)) + body)


def forward(head, body):
    lines = head.split(b"\r\n")
    kept = [l for l in lines[1:] if not l.lower().startswith(b"connection:")]
    raw = b"\r\n".join([lines[0]] + kept + [b"Connection: close"]) + b"\r\n\r\n" + body
    up = socket.create_connection((up_host, up_port))
    up.sendall(raw)
    out = []
    while True:
        chunk = up.recv(1 << 20)
        if not chunk:
            break
        out.append(chunk)
    up.close()
    return b"".join(out)


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def choose(method, path):
    for m, sub, action in rules:
        if (m in ("*", method)) and sub in path:
            return action
    with lock:
        if schedule:
            return schedule.pop(0)
        if cycle:
            action = cycle[counter[0] % len(cycle)]
            counter[0] += 1
            return action
    return "pass"


def handle(conn):
    try:
        head = recv_exact_head(conn)
        if head is None:
            return
        first = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, path = first[0], first[1] if len(first) > 1 else "?"
        action = choose(method, path)
        with lock, open(a.log, "a") as f:
            f.write("%s %s %s\n" % (action, method, path.split("?")[0]))
        # Re-read the request from what was received plus the rest of the body.
        hdr, _, body = head.partition(b"\r\n\r\n")
        length = 0
        for line in hdr.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        slow = action == "slowup"
        step = max(1, a.slow_rate // 20)
        while len(body) < length:
            chunk = conn.recv(step if slow else 1 << 20)
            if not chunk:
                break
            body += chunk
            if slow:
                time.sleep(len(chunk) / a.slow_rate)
        if action in ("pass", "slowup"):
            conn.sendall(forward(hdr, body))
        elif action in ("500", "503"):
            respond(conn, int(action), b"Injected", b"InternalError" if action == "500" else b"ServiceUnavailable")
        elif action == "403":
            respond(conn, 403, b"Forbidden", b"AccessDenied")
        elif action == "slowdown":
            respond(conn, 503, b"Slow Down", b"SlowDown")
        elif action == "reset":
            reset(conn)
        elif action == "truncate":
            out = forward(hdr, body)
            conn.sendall(out[: max(1, len(out) // 2)])
            reset(conn)
        elif action == "stall":
            time.sleep(120)
        elif action == "slow":
            out = forward(hdr, body)
            for i in range(0, len(out), step):
                conn.sendall(out[i:i + step])
                time.sleep(step / a.slow_rate)
        else:
            respond(conn, 500, b"Unknown action", action.encode())
    except OSError:
        pass
    finally:
        conn.close()


def watch_parent():
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", a.port))
srv.listen(128)
threading.Thread(target=watch_parent, daemon=True).start()
print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
