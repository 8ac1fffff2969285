#!/usr/bin/env python3
"""What the controller's ServiceAccount used of its grants, from the apiserver's audit log (issue 14 item 4).

hack/cluster.sh starts kube-apiserver with an audit policy that records every request of
system:serviceaccount:botrt-system:botrt-controller at Metadata level. Every end-to-end flow runs its controller as that
ServiceAccount with the shipped manifests/rbac/ (hack/node/lib.sh node_controller; hack/install-test.sh installs it
in-cluster). This script then compares the requests with the rules of the RBAC manifests and fails when:

  - a request was denied by RBAC (annotation authorization.k8s.io/decision=forbid): a grant is missing, and the
    controller would fail on a real cluster;
  - a granted (group, resource, verb) was never used, and the manifest gives no reason for keeping it: a comment
    `# unexercised: GROUP/RESOURCE VERB[,VERB...]: REASON` in the manifest (GROUP `core` for the core group);
  - a grant said to be unexercised was used (the reason is stale).

A documented uninstall deletes the controller's own RBAC while its Pods still run, so their last requests are denied:
a flow that runs one records its window in `rbac-audit-teardown` beside the audit log (one line per window: start and
end in RFC 3339, then what it was). Denials inside a window are listed as expected, not failures; uses inside a window
still count.

A grant whose use depends on timing (e.g. an Event repeated within the aggregation window, which is patched) says
`# sometimes: GROUP/RESOURCE VERB: REASON`: used or not, it passes, and the report says which.

Usage: hack/rbac-audit.py AUDIT_LOG MANIFEST...
"""
import datetime
import json
import os
import re
import sys

import yaml

USER = "system:serviceaccount:botrt-system:botrt-controller"
REASON = re.compile(r"#\s*(unexercised|sometimes):\s*(\S+)\s+(\S+):\s*(\S.*)$")


def grants(paths):
    """(group, resource, verb) -> manifest, and the reasons given for unused ones."""
    out, reasons, sometimes = {}, {}, set()
    for path in paths:
        text = open(path).read()
        for line in text.splitlines():
            m = REASON.search(line)
            if m:
                group, resource = m.group(2).split("/", 1)
                for verb in m.group(3).split(","):
                    k = ("" if group == "core" else group, resource, verb)
                    reasons[k] = m.group(4)
                    if m.group(1) == "sometimes":
                        sometimes.add(k)
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") not in ("ClusterRole", "Role"):
                continue
            for rule in doc.get("rules") or []:
                for g in rule.get("apiGroups") or []:
                    for r in rule.get("resources") or []:
                        for v in rule.get("verbs") or []:
                            if "*" in (g, r, v):
                                sys.exit(f"rbac-audit: {path}: a wildcard rule ({g}/{r} {v}) grants more than is used")
                            out[(g, r, v)] = path
    return out, reasons, sometimes


def when(text):
    """An RFC 3339 time (the audit log's microseconds, or `date`'s nanoseconds) as a UTC datetime."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", text)
    if not m:
        sys.exit(f"rbac-audit: not an RFC 3339 UTC time: {text}")
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t + datetime.timedelta(microseconds=int((m.group(2) or "0")[:6].ljust(6, "0")))


def teardowns(log):
    """The uninstall windows recorded beside the audit log: [(start, end, what)]."""
    path = os.path.join(os.path.dirname(os.path.abspath(log)), "rbac-audit-teardown")
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        parts = line.split(None, 2)
        if len(parts) >= 2:
            out.append((when(parts[0]), when(parts[1]), parts[2].strip() if len(parts) > 2 else ""))
    return out


def requests(log, windows=()):
    used, denied, expected, count = {}, {}, {}, 0
    with open(log) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("user", {}).get("username") != USER or e.get("stage") not in ("ResponseComplete", "ResponseStarted"):
                continue
            ref = e.get("objectRef")
            if not ref:
                continue  # discovery and other non-resource URLs (system:discovery)
            count += 1
            resource = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            key = (ref.get("apiGroup", ""), resource, e.get("verb", ""))
            # Denied by RBAC, not by admission (a 403 for a namespace being terminated was authorized).
            decision = (e.get("annotations") or {}).get("authorization.k8s.io/decision")
            if decision == "forbid":
                at = when(e.get("requestReceivedTimestamp", "1970-01-01T00:00:00Z"))
                inside = [w for w in windows if w[0] <= at <= w[1]]
                if inside:
                    expected[key] = (expected.get(key, (0, ""))[0] + 1, inside[0][2])
                else:
                    denied[key] = denied.get(key, 0) + 1
            else:
                used[key] = used.get(key, 0) + 1
    return used, denied, expected, count


def name(k):
    return f"{k[0] or 'core'}/{k[1]} {k[2]}"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    log, manifests = sys.argv[1], sys.argv[2:]
    granted, reasons, sometimes = grants(manifests)
    used, denied, expected, count = requests(log, teardowns(log))
    if count == 0:
        sys.exit(f"rbac-audit: no request of {USER} in {log}: did the flows run their controller as it?")
    print(f"rbac-audit: {count} requests of {USER}; {len(granted)} granted (group, resource, verb)")
    for k in sorted(used):
        print(f"  used     {name(k):60} {used[k]:6d}")
    failed = False
    for k in sorted(expected):
        print(f"  denied   {name(k):60} {expected[k][0]:6d}  during an uninstall ({expected[k][1]}): expected")
    for k in sorted(denied):
        print(f"  DENIED   {name(k):60} {denied[k]:6d}  (a grant is missing from {', '.join(manifests)})")
        failed = True
    for k in sorted(set(granted) - set(used)):
        why = reasons.get(k)
        if why:
            print(f"  unused   {name(k):60}  kept: {why}")
        else:
            print(f"  UNUSED   {name(k):60}  no request used it and {granted[k]} gives no `# unexercised:` reason")
            failed = True
    for k in sorted(set(reasons) & set(used)):
        if k in sometimes:
            print(f"  sometimes {name(k):59} used {used[k]} times this run ({reasons[k]})")
            continue
        print(f"  stale    {name(k):60}  used {used[k]} times, but the manifest says it is unexercised")
        failed = True
    for k in sorted(set(reasons) - set(granted)):
        print(f"  stale    {name(k):60}  a reason for a grant the manifests do not have")
        failed = True
    if failed:
        print("rbac-audit: FAIL")
        sys.exit(1)
    print("rbac-audit: every grant is used or has a reason, and no request was denied")


if __name__ == "__main__":
    main()
