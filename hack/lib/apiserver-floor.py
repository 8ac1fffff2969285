#!/usr/bin/env python3
"""The apiserver's write floor: how many small writes per second the apiserver accepts, measured in the same run
as the controller benchmark (hack/bench-controller.sh), so the controller's time is reported against it.

    apiserver-floor.py NAMESPACE WRITES CONNECTIONS...

Creates WRITES ConfigMaps in NAMESPACE for each connection count (each connection a keep-alive HTTPS session
doing sequential POSTs, as one client would), deletes them with one collection delete, and prints one line per
count: "connections=C writes=W seconds=S writes_per_second=R". Server, CA and bearer token come from the
environment (BOTRT_FLOOR_SERVER, BOTRT_FLOOR_CA, BOTRT_FLOOR_TOKEN), read from the kubeconfig by the caller.
"""
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse


def connect(server, ctx):
    u = urllib.parse.urlparse(server)
    return http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=60)


def main():
    ns, writes = sys.argv[1], int(sys.argv[2])
    counts = [int(c) for c in sys.argv[3:]] or [1]
    server, token = os.environ["BOTRT_FLOOR_SERVER"], os.environ["BOTRT_FLOOR_TOKEN"]
    ctx = ssl.create_default_context(cafile=os.environ["BOTRT_FLOOR_CA"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    path = f"/api/v1/namespaces/{ns}/configmaps"
    for c in counts:
        per = writes // c
        errors = []

        def work(worker):
            conn = connect(server, ctx)
            for i in range(per):
                body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": f"floor-{c}-{worker}-{i}", "labels": {"floor": "1"}},
                                   "data": {"k": "v"}})
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 201:
                    errors.append(r.status)
            conn.close()

        threads = [threading.Thread(target=work, args=(w,)) for w in range(c)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - start
        if errors:
            sys.exit(f"apiserver-floor: {len(errors)} writes failed, e.g. HTTP {errors[0]}")
        print(f"connections={c} writes={per * c} seconds={seconds:.2f} writes_per_second={per * c / seconds:.0f}")
        conn = connect(server, ctx)
        conn.request("DELETE", path + "?labelSelector=floor%3D1", headers=headers)
        conn.getresponse().read()
        conn.close()


if __name__ == "__main__":
    main()
