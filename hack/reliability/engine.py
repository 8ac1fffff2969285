#!/usr/bin/env python3
"""The engine half of the reliability and security suite (issue 7); run by hack/reliability/engine.sh.

Every check drives the real botrt-engine binary against real services (a local directory, moto S3
with Object Lock, OpenBao Transit) and fails loudly: any broken promise raises, the script prints
FAIL and exits 1. Figures go to stdout and, as JSON, to --out.

  engine.py kills   --local N --s3 N   SIGKILL at random points during backup, then verify and resume
  engine.py faults  [--stall]          storage faults from a proxy in front of moto
  engine.py kms                        OpenBao stopped, unreachable or failing: exit 13, no plaintext
  engine.py canary                     a canary Vault token and S3 secret never appear anywhere
  engine.py objectlock                 COMPLIANCE Object Lock on moto: prune refused, retention extended
  engine.py stream --gib N             N GiB through --stdin, RSS sampled, restored and compared
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURES = {}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def env_required(name):
    v = os.environ.get(name, "")
    if not v:
        raise Failure(f"{name} is not set: start the services (hack/services.sh up; source <(hack/services.sh env)) "
                      "and export BOTRT_ENGINE_BIN, or run hack/reliability/engine.sh")
    return v


ENGINE = None
# --quick (hack/test.sh, with a debug build of the engine): smaller data, fewer outages.
QUICK = False


def mib(full, quick):
    return (quick if QUICK else full) << 20


class Run:
    def __init__(self, code, stdout, stderr, result, seconds):
        self.code, self.stdout, self.stderr, self.result, self.seconds = code, stdout, stderr, result, seconds

    @property
    def text(self):
        return self.stdout + self.stderr

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


def parse_result(text):
    for line in reversed(text.splitlines()):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict) and "command" in o:
            return o
    return {}


def engine(args, env=None, stdin=None, timeout=900, cwd=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    t0 = time.monotonic()
    p = subprocess.run([ENGINE] + args, env=e, input=stdin, capture_output=True, timeout=timeout, cwd=cwd)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    return Run(p.returncode, out, err, parse_result(out) or parse_result(err), time.monotonic() - t0)


def ok(args, **kw):
    r = engine(args, **kw)
    check(r.code == 0, f"botrt-engine {' '.join(args)} failed: {r!r}")
    return r


# ---------------------------------------------------------------- repositories


class LocalRepo:
    kind = "local"

    def __init__(self, root, key=None):
        self.root = root
        self.path = os.path.join(root, "repo")
        self.key = key or os.path.join(root, "kek")
        if not os.path.exists(self.key):
            with open(self.key, "wb") as f:
                f.write(os.urandom(32))
        self.url = "file://" + self.path
        self.kms = "file://" + self.key
        self.env = {}

    def flags(self):
        return ["--repo", self.url, "--kms", self.kms, "--quiet"]

    def objects(self, prefix=""):
        out = {}
        base = os.path.join(self.path, prefix)
        for d, _, files in os.walk(base):
            for f in files:
                if f.startswith(".tmp-"):
                    continue  # an interrupted write's temporary file, never listed by the store
                full = os.path.join(d, f)
                out[os.path.relpath(full, self.path)] = os.path.getsize(full)
        return out

    def read(self, key):
        with open(os.path.join(self.path, key), "rb") as f:
            return f.read()


def s3_client(endpoint=None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or env_required("BOTRT_S3_ENDPOINT"), region_name="us-east-1",
                        aws_access_key_id=env_required("AWS_ACCESS_KEY_ID"),
                        aws_secret_access_key=env_required("AWS_SECRET_ACCESS_KEY"),
                        config=Config(retries={"max_attempts": 2}))


def new_bucket(tag, object_lock=False, endpoint=None):
    name = f"botrt-rel-{tag}-{uuid.uuid4().hex[:10]}"
    kw = {"Bucket": name}
    if object_lock:
        kw["ObjectLockEnabledForBucket"] = True
    s3_client(endpoint).create_bucket(**kw)
    return name


class PrivateMoto:
    """A moto S3 server of the suite's own on a free loopback port. moto keeps every object it was sent in
    temporary files until it exits (deleting the objects does not free them), so the kill runs, which upload
    gigabytes, use their own server and restart it every few runs."""

    def __init__(self, work):
        self.work, self.proc, self.endpoint = work, None, None

    def start(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        log = open(os.path.join(self.work, f"moto-{port}.log"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).read()
                return self.endpoint
            except OSError:
                time.sleep(0.3)
        raise Failure(f"the private moto server did not start (log {log.name})")

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None


class S3Repo:
    kind = "s3"

    def __init__(self, root, bucket, prefix, endpoint=None, data_endpoint=None):
        """endpoint: what the engine talks to (moto, or a proxy in front of it); data_endpoint: moto itself, for
        listing and reading objects (default BOTRT_S3_ENDPOINT)."""
        self.root = root
        self.bucket, self.prefix = bucket, prefix
        self.key = os.path.join(root, "kek")
        if not os.path.exists(self.key):
            with open(self.key, "wb") as f:
                f.write(os.urandom(32))
        self.url = f"s3://{bucket}/{prefix}"
        self.kms = "file://" + self.key
        self.endpoint = endpoint or env_required("BOTRT_S3_ENDPOINT")
        self.env = {"BOTRT_S3_ENDPOINT": self.endpoint}
        self.s3 = s3_client(data_endpoint)

    def flags(self):
        return ["--repo", self.url, "--kms", self.kms, "--quiet"]

    def objects(self, prefix=""):
        out = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/" + prefix)
        for page in pages:
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix) + 1:]] = o["Size"]
        return out

    def read(self, key):
        return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + "/" + key)["Body"].read()

    def versions(self, prefix=""):
        """Key -> version ids of the stored versions (delete markers left out)."""
        out = {}
        pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket,
                                                                        Prefix=self.prefix + "/" + prefix)
        for page in pages:
            for v in page.get("Versions", []):
                out.setdefault(v["Key"][len(self.prefix) + 1:], []).append(v["VersionId"])
        return out

    def purge(self):
        """Deletes the repository's objects (moto keeps large objects in temporary files)."""
        keys = [self.prefix + "/" + k for k in self.objects()]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})

    def retain_until(self, key):
        h = self.s3.head_object(Bucket=self.bucket, Key=self.prefix + "/" + key)
        return h.get("ObjectLockRetainUntilDate"), h.get("ObjectLockMode")


def write_random(path, size, rng=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n) if rng else os.urandom(n))
            left -= n


def tree_digest(root):
    h = {}
    for d, _, files in os.walk(root):
        for f in files:
            full = os.path.join(d, f)
            with open(full, "rb") as fh:
                h[os.path.relpath(full, root)] = hashlib.sha256(fh.read()).hexdigest()
    return h


def start_proxy(work, upstream, schedule=(), cycle=(), rules=(), slow_rate=None):
    """Starts faultproxy.py in front of upstream (http://host:port); returns (process, url, log path)."""
    host_port = upstream.split("://", 1)[1].rstrip("/")
    log = os.path.join(work, f"proxy-{uuid.uuid4().hex[:6]}.log")
    args = [sys.executable, os.path.join(HERE, "faultproxy.py"), "--upstream", host_port, "--log", log,
            "--schedule", ",".join(schedule), "--cycle", ",".join(cycle)]
    for r in rules:
        args += ["--rule", r]
    if slow_rate:
        args += ["--slow-rate", str(slow_rate)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE)
    port = int(p.stdout.readline().strip())
    return p, f"http://127.0.0.1:{port}", log


def stop(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def proxy_actions(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [l.split(" ", 1)[0] for l in f if l.strip()]


# ---------------------------------------------------------------- 1. SIGKILL during backup


def kill_suite(work, n_local, n_s3, seed, mib):
    rng = random.Random(seed)
    summary = {}
    for kind, n in (("local", n_local), ("s3", n_s3)):
        if n == 0:
            continue
        moto = PrivateMoto(work) if kind == "s3" else None
        endpoint = moto.start() if moto else None
        bucket = new_bucket("kill", endpoint=endpoint) if moto else None
        # Fresh random data per run (40 MiB by default: five packs of 8 MiB), in files of at most 8 MiB.
        n_files = max(1, (mib + 7) // 8)
        size_per_file = (mib << 20) // n_files

        def make_repo(tag):
            root = tempfile.mkdtemp(prefix=f"kill-{kind}-{tag}-", dir=work)
            return LocalRepo(root) if kind == "local" else S3Repo(root, bucket, tag, endpoint=endpoint, data_endpoint=endpoint)

        # Calibration: a fresh, uninterrupted backup of the same shape gives the duration and bytes stored.
        cal = make_repo("calibrate")
        ok(["init"] + cal.flags(), env=cal.env)
        for k in range(n_files):
            write_random(f"{cal.root}/src/f{k}.bin", size_per_file)
        fresh = ok(["backup", cal.root + "/src"] + cal.flags(), env=cal.env)
        fresh_stored = fresh.result["bytesStored"]
        duration = fresh.seconds
        if kind == "s3":
            cal.purge()
        shutil.rmtree(cal.root)
        print(f"kills/{kind}: a fresh backup of {n_files * size_per_file >> 20} MiB takes {duration:.2f} s "
              f"and stores {fresh_stored} bytes", flush=True)
        runs = []
        for i in range(n):
            if moto and i and i % 10 == 0:
                moto.stop()
                endpoint = moto.start()
                bucket = new_bucket("kill", endpoint=endpoint)
            repo = make_repo(f"run{i}")
            ok(["init"] + repo.flags(), env=repo.env)
            write_random(f"{repo.root}/src/base.bin", 1 << 20)
            ok(["backup", repo.root + "/src"] + repo.flags(), env=repo.env)
            before = repo.objects("data/")
            for k in range(n_files):
                write_random(f"{repo.root}/src/run{i}-{k}.bin", size_per_file)
            delay = rng.uniform(0.0, duration * 1.15)
            e = dict(os.environ)
            e.update(repo.env)
            proc = subprocess.Popen([ENGINE, "backup", repo.root + "/src"] + repo.flags(), env=e,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            finished_first = proc.poll() is not None
            if not finished_first:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            after = repo.objects()
            new_packs = {k: v for k, v in after.items() if k.startswith("data/") and k not in before}
            snaps = [k for k in after if k.startswith("snapshots/")]
            point = {
                "run": i, "delayMs": round(delay * 1000), "fraction": round(delay / duration, 2),
                "completedBeforeKill": finished_first, "newPacks": len(new_packs),
                "newPackBytes": sum(new_packs.values()), "indexFiles": len([k for k in after if k.startswith("index/")]),
                "snapshots": len(snaps),
            }
            v = engine(["verify", "--all", "--read-data"] + repo.flags(), env=repo.env)
            check(v.code == 0, f"kills/{kind} run {i} ({point}): verify after SIGKILL failed: {v!r}")
            s = ok(["snapshots"] + repo.flags(), env=repo.env)
            listed = s.result.get("snapshots", [])
            check(len(listed) == len(snaps) and len(listed) in (1, 2),
                  f"kills/{kind} run {i}: snapshots lists {len(listed)} of {len(snaps)} manifests")
            resume = ok(["backup", repo.root + "/src"] + repo.flags(), env=repo.env)
            stored = resume.result["bytesStored"]
            point["resumeBytesStored"] = stored
            point["adopted"] = "adopted" in resume.text
            # What the killed run uploaded is reused: the resumed backup stores at most what was missing.
            slack = (1 << 20) + fresh_stored // 50
            check(stored + point["newPackBytes"] <= fresh_stored + slack,
                  f"kills/{kind} run {i} ({point}): the resumed backup stored {stored} bytes although "
                  f"{point['newPackBytes']} of {fresh_stored} were already uploaded")
            if point["newPackBytes"] >= 8 << 20:
                check(stored <= fresh_stored - point["newPackBytes"] * 0.9, f"kills/{kind} run {i}: no reuse ({point})")
            if len(listed) == 2:  # the killed backup had finished its manifest: it must restore exactly
                check(stored < slack, f"kills/{kind} run {i}: a finished snapshot's data was stored again ({point})")
            r = ok(["restore", "latest", "--target", repo.root + "/out"] + repo.flags(), env=repo.env)
            check(tree_digest(repo.root + "/out/src") == tree_digest(repo.root + "/src"),
                  f"kills/{kind} run {i}: the restored tree differs from the source")
            del r
            runs.append(point)
            print(f"kills/{kind} run {i + 1}/{n}: {json.dumps(point)}", flush=True)
            if kind == "s3":
                repo.purge()
            shutil.rmtree(repo.root)
        phases = {"completed before kill": 0, "no pack uploaded yet": 0, "1 new pack": 0, "2 new packs": 0,
                  "3+ new packs, no manifest": 0, "manifest written, killed before exit": 0}
        for p in runs:
            if p["completedBeforeKill"]:
                phases["completed before kill"] += 1
            elif p["snapshots"] == 2:
                phases["manifest written, killed before exit"] += 1
            elif p["newPacks"] == 0:
                phases["no pack uploaded yet"] += 1
            elif p["newPacks"] == 1:
                phases["1 new pack"] += 1
            elif p["newPacks"] == 2:
                phases["2 new packs"] += 1
            else:
                phases["3+ new packs, no manifest"] += 1
        reused = [p for p in runs if p["newPackBytes"] >= 8 << 20 and p["snapshots"] == 1]
        summary[kind] = {
            "runs": len(runs), "freshBackupSeconds": round(duration, 2), "freshBytesStored": fresh_stored,
            "killDelayMsRange": [min(p["delayMs"] for p in runs), max(p["delayMs"] for p in runs)],
            "killPoints": phases,
            "runsWithReuse": len(reused),
            "meanResumeStoredFractionWhenPacksLeft": round(
                sum(p["resumeBytesStored"] for p in reused) / (len(reused) * fresh_stored), 3) if reused else None,
            "verifyFailures": 0,
        }
        print(f"kills/{kind}: {json.dumps(summary[kind])}", flush=True)
        if moto:
            moto.stop()
    FIGURES["kills"] = summary


# ---------------------------------------------------------------- 2. storage faults


def fault_suite(work, with_stall):
    endpoint = env_required("BOTRT_S3_ENDPOINT")
    bucket = new_bucket("faults")
    root = tempfile.mkdtemp(prefix="faults-", dir=work)
    for k in range(3):
        write_random(f"{root}/src/f{k}.bin", mib(12, 3))
    write_random(f"{root}/src/small.txt", 1000)
    results = {}

    def through(schedule=(), cycle=(), rules=(), slow_rate=None):
        p, url, log = start_proxy(root, endpoint, schedule, cycle, rules, slow_rate)
        return p, S3Repo(root, bucket, "repo", endpoint=url), log

    direct = S3Repo(root, bucket, "repo")
    ok(["init"] + direct.flags(), env=direct.env)

    # a) transient faults on a schedule: every kind once or more, never more than the retry budget in a row.
    kinds = ["500", "503", "reset", "slowdown", "truncate", "slow", "slowup", "403x"]
    cycle = []
    for k in kinds:
        if k != "403x":
            cycle += [k, "pass", "pass"]
    sched = ["stall"] if with_stall else []
    p, repo, log = through(schedule=sched, cycle=cycle, slow_rate=8 << 20)
    t0 = time.monotonic()
    b = engine(["backup", root + "/src"] + repo.flags(), env=repo.env)
    check(b.code == 0, f"faults: backup through transient faults failed: {b!r}")
    r = engine(["restore", "latest", "--target", root + "/out"] + repo.flags(), env=repo.env)
    check(r.code == 0, f"faults: restore through transient faults failed: {r!r}")
    check(tree_digest(root + "/out/src") == tree_digest(root + "/src"), "faults: restored tree differs")
    stop(p)
    acts = proxy_actions(log)
    counts = {k: acts.count(k) for k in sorted(set(acts))}
    check(all(counts.get(k, 0) >= 1 for k in kinds if k != "403x"), f"faults: not every fault was injected: {counts}")
    results["transient"] = {"requests": len(acts), "actions": counts, "seconds": round(time.monotonic() - t0, 1),
                            "backupExit": b.code, "restoreExit": r.code}
    ok(["verify", "--all", "--read-data"] + direct.flags(), env=direct.env)
    base_snaps = len(ok(["snapshots"] + direct.flags(), env=direct.env).result["snapshots"])
    print(f"faults/transient: {json.dumps(results['transient'])}", flush=True)

    # b) persistent outages at different points: the engine gives up with exit 4 and a clear message,
    # no partial snapshot is visible, the repository verifies clean, and the next backup succeeds.
    outages = {
        "every request 503 after 12 passes": dict(schedule=["pass"] * 12, cycle=["503"]),
        "every request reset after 14 passes": dict(schedule=["pass"] * 14, cycle=["reset"]),
        "index uploads always 500": dict(rules=["PUT:/index/=500"]),
        "manifest uploads always 503": dict(rules=["PUT:/snapshots/=503"]),
        "pack uploads always reset": dict(rules=["PUT:/data/=reset"]),
    }
    if QUICK:
        outages = {k: v for k, v in outages.items() if k == "manifest uploads always 503"}
    n = 0
    for name, kw in outages.items():
        n += 1
        write_random(f"{root}/src/new{n}.bin", mib(20, 9))
        p, repo, log = through(**kw)
        t0 = time.monotonic()
        b = engine(["backup", root + "/src"] + repo.flags(), env=repo.env)
        secs = time.monotonic() - t0
        stop(p)
        check(b.code == 4, f"faults/{name}: expected exit 4 (storage), got {b!r}")
        err_line = next((l for l in b.stderr.splitlines() if l.startswith("error:")), "")
        check("attempts" in err_line or "503" in err_line or "500" in err_line or "reset" in err_line.lower(),
              f"faults/{name}: unclear error: {err_line}")
        check(b.result.get("exitCode") == 4 and b.result.get("ok") is False, f"faults/{name}: result {b.result}")
        check(secs < 300, f"faults/{name}: took {secs:.0f} s: retries are not bounded")
        s = ok(["snapshots"] + direct.flags(), env=direct.env)
        check(len(s.result["snapshots"]) == base_snaps, f"faults/{name}: a partial snapshot is visible: {s.result}")
        v = engine(["verify", "--all", "--read-data"] + direct.flags(), env=direct.env)
        check(v.code == 0, f"faults/{name}: verify after the outage failed: {v!r}")
        results[name] = {"exit": b.code, "seconds": round(secs, 1), "requests": len(proxy_actions(log)),
                         "error": err_line[:300]}
        print(f"faults/{name}: {json.dumps(results[name])}", flush=True)
    after = ok(["backup", root + "/src"] + direct.flags(), env=direct.env)
    check(len(ok(["snapshots"] + direct.flags(), env=direct.env).result["snapshots"]) == base_snaps + 1,
          "faults: the backup after the outages did not add exactly one snapshot")
    ok(["verify", "--all", "--read-data"] + direct.flags(), env=direct.env)
    results["backup after outages"] = {"bytesStored": after.result["bytesStored"], "adopted": "adopted" in after.text}
    FIGURES["faults"] = results
    direct.purge()
    shutil.rmtree(root)


# ---------------------------------------------------------------- 3. KMS down


def grep_tree(root, needles):
    hits = []
    for d, _, files in os.walk(root):
        for f in files:
            full = os.path.join(d, f)
            try:
                with open(full, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            for n in needles:
                if n in data:
                    hits.append((full, n[:20]))
    return hits


def marker_file(path, marker, size=3 << 20):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        while f.tell() < size:
            f.write(marker + b" " + os.urandom(16).hex().encode() + b"\n")


def vault_token_create(token_id):
    addr = env_required("VAULT_ADDR")
    req = urllib.request.Request(addr + "/v1/auth/token/create", method="POST",
                                 data=json.dumps({"id": token_id, "policies": ["root"], "ttl": "1h"}).encode(),
                                 headers={"X-Vault-Token": env_required("VAULT_TOKEN")})
    with urllib.request.urlopen(req, timeout=10) as r:
        check(r.status == 200, "cannot create a Vault token")


def kms_suite(work):
    vault = env_required("VAULT_ADDR")
    env_required("VAULT_TOKEN")
    root = tempfile.mkdtemp(prefix="kms-", dir=work)
    marker = b"BOTRT-PLAINTEXT-MARKER-" + uuid.uuid4().hex.encode()
    marker_file(f"{root}/src/secret.txt", marker)
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp)
    results = {}

    def vrepo(proxy_url, name):
        hp = proxy_url.split("://", 1)[1]
        r = LocalRepo(root)
        r.path = os.path.join(root, name)
        r.url = "file://" + r.path
        r.kms = f"vault-transit://{hp}/transit/botrt-test"
        r.env = {"VAULT_ADDR": proxy_url, "TMPDIR": tmp}
        return r

    # The repository is created through a proxy that passes, then the proxy (the KMS, as the engine sees it)
    # is stopped, answers 503, or is replaced by a closed port.
    p, url, _ = start_proxy(root, vault)
    repo = vrepo(url, "repo")
    ok(["init"] + repo.flags(), env=repo.env)
    ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    stop(p)
    marker_file(f"{root}/src/secret2.txt", marker, 1 << 20)
    cases = {}
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    cases["OpenBao stopped (proxy killed)"] = (url, None)
    cases["nothing listens on the KMS port"] = (f"http://127.0.0.1:{closed_port}", None)
    cases["OpenBao answers 503 (sealed)"] = (None, dict(cycle=["503"]))
    cases["OpenBao resets every connection"] = (None, dict(cycle=["reset"]))
    for name, (target, proxy_kw) in cases.items():
        pp = None
        if proxy_kw:
            pp, target, _ = start_proxy(root, vault, **proxy_kw)
        r = vrepo(target, "repo")
        before = r.objects()
        t0 = time.monotonic()
        for cmd in (["backup", root + "/src"], ["restore", "latest", "--target", root + "/out-" + name[:6]]):
            b = engine(cmd + r.flags() + ["--result-file", root + "/result.json"], env=r.env, timeout=300)
            check(b.code == 13, f"kms/{name}: {cmd[0]} expected exit 13 (KMS), got {b!r}")
            err_line = next((l for l in b.stderr.splitlines() if l.startswith("error:")), "")
            check("vault" in err_line.lower() or "kms" in err_line.lower(), f"kms/{name}: unclear error: {err_line}")
        secs = time.monotonic() - t0
        new = {k for k in r.objects() if k not in before and not k.startswith("locks/")}
        check(not new, f"kms/{name}: objects written while the KMS was down: {sorted(new)}")
        check(not os.path.exists(root + "/out-" + name[:6]) or not os.listdir(root + "/out-" + name[:6]),
              f"kms/{name}: restore wrote files without keys")
        if pp:
            stop(pp)
        results[name] = {"exit": 13, "seconds": round(secs, 1), "error": err_line[:300]}
        print(f"kms/{name}: {json.dumps(results[name])}", flush=True)
    # init while the KMS is down writes nothing at all.
    r = vrepo(f"http://127.0.0.1:{closed_port}", "repo-init")
    b = engine(["init"] + r.flags(), env=r.env, timeout=300)
    check(b.code == 13, f"kms/init: expected exit 13, got {b!r}")
    check(not os.path.exists(r.path) or not r.objects(), f"kms/init: wrote {r.objects()}")
    results["init while down"] = {"exit": b.code, "objectsWritten": 0}
    hits = grep_tree(root + "/repo", [marker]) + grep_tree(tmp, [marker])
    check(not hits, f"kms: plaintext marker found in {hits}")
    results["plaintext marker hits (repository objects, TMPDIR)"] = 0
    results["repository objects scanned"] = len(vrepo(url, "repo").objects())
    FIGURES["kms"] = results
    shutil.rmtree(root)


# ---------------------------------------------------------------- 6. canary secrets


def canary_suite(work):
    vault = env_required("VAULT_ADDR")
    endpoint = env_required("BOTRT_S3_ENDPOINT")
    root = tempfile.mkdtemp(prefix="canary-", dir=work)
    token = "CANARYTOKEN" + uuid.uuid4().hex
    wrong = "CANARYWRONG" + uuid.uuid4().hex
    secret = "CANARYS3SECRET" + uuid.uuid4().hex
    session = "CANARYS3SESSION" + uuid.uuid4().hex
    vault_token_create(token)
    canaries = [token.encode(), wrong.encode(), secret.encode(), session.encode()]
    with open(root + "/token", "w") as f:
        f.write(token + "\n")
    with open(root + "/wrong-token", "w") as f:
        f.write(wrong + "\n")
    write_random(root + "/src/a.bin", 2 << 20)
    bucket = new_bucket("canary")
    hp = vault.split("://", 1)[1]
    kms = f"vault-transit://{hp}/transit/botrt-test"
    outputs = []
    n_runs = 0
    base = {"VAULT_TOKEN": token, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": session}

    def run(name, args, env, expect):
        nonlocal n_runs
        resf = f"{root}/result-{n_runs}.json"
        r = engine(args + ["--result-file", resf, "--json"], env=env, timeout=300)
        n_runs += 1
        check(r.code == expect, f"canary/{name}: expected exit {expect}, got {r!r}")
        with open(resf, "rb") as f:
            res = f.read()
        outputs.append((name, r.stdout.encode() + r.stderr.encode() + res))
        return r

    s3 = ["--repo", f"s3://{bucket}/repo", "--kms", kms]
    loc = ["--repo", f"file://{root}/repo", "--kms", kms]
    s3env = dict(base, BOTRT_S3_ENDPOINT=endpoint)
    for name, flags, env in (("s3", s3, s3env), ("local", loc, base)):
        run(f"{name} init", ["init"] + flags, env, 0)
        run(f"{name} backup", ["backup", root + "/src"] + flags, env, 0)
        run(f"{name} verify", ["verify", "--all", "--read-data"] + flags, env, 0)
        run(f"{name} snapshots", ["snapshots"] + flags, env, 0)
        run(f"{name} restore", ["restore", "latest", "--target", f"{root}/out-{name}"] + flags, env, 0)
        run(f"{name} token file", ["snapshots", "--vault-token-file", root + "/token"] + flags,
            {k: v for k, v in env.items() if k != "VAULT_TOKEN"} | {"VAULT_TOKEN": ""}, 0)
        # Error paths.
        run(f"{name} wrong token", ["backup", root + "/src"] + flags, dict(env, VAULT_TOKEN=wrong), 13)
        run(f"{name} wrong token file", ["snapshots", "--vault-token-file", root + "/wrong-token"] + flags,
            dict(env, VAULT_TOKEN=""), 13)
        run(f"{name} wrong transit key", ["snapshots", "--repo", flags[1], "--kms",
                                          f"vault-transit://{hp}/transit/botrt-test-2"], env, 12)
        run(f"{name} missing transit key", ["snapshots", "--repo", flags[1], "--kms",
                                            f"vault-transit://{hp}/transit/no-such-key"], env, 13)
        run(f"{name} KMS down", ["backup", root + "/src", "--repo", flags[1], "--kms",
                                 "vault-transit://127.0.0.1:1/transit/botrt-test"], env, 13)
        run(f"{name} init on existing repo", ["init"] + flags, env, 2)
    # Storage 403 (and 500s until the retry budget ends) with the canary S3 secret in the environment.
    for action, code in (("403", 4), ("500", 4)):
        p, url, _ = start_proxy(root, endpoint, cycle=[action])
        run(f"s3 storage {action}", ["backup", root + "/src"] + s3, dict(s3env, BOTRT_S3_ENDPOINT=url), code)
        stop(p)
    # The repository objects, audit trail included.
    repo_bytes = []
    s3r = S3Repo(root, bucket, "repo")
    for k in s3r.objects():
        repo_bytes.append(("s3:" + k, s3r.read(k)))
    lr = LocalRepo(root)
    for k in lr.objects():
        repo_bytes.append(("local:" + k, lr.read(k)))
    audit = [k for k, _ in repo_bytes if "/audit/" in "/" + k.split(":", 1)[1]]
    check(len(audit) >= 6, f"canary: expected audit objects in both repositories, found {audit}")
    hits = []
    for name, data in outputs + repo_bytes:
        for c in canaries:
            if c in data:
                hits.append((name, c[:14].decode()))
    check(not hits, f"canary: a secret appeared in {hits}")
    check(len(outputs) == n_runs and all(d for _, d in outputs), "canary: an engine run left no output to scan")
    FIGURES["canary"] = {"engineRuns": n_runs, "repositoryObjectsScanned": len(repo_bytes),
                         "auditObjects": len(audit), "hits": 0,
                         "errorPaths": ["wrong token", "wrong token file", "wrong transit key", "missing transit key",
                                        "KMS down", "init on existing repo", "storage 403", "storage 500"]}
    print(f"canary: {json.dumps(FIGURES['canary'])}", flush=True)
    shutil.rmtree(root)


# ---------------------------------------------------------------- 7. Object Lock


def objectlock_suite(work):
    bucket = new_bucket("lock", object_lock=True)
    root = tempfile.mkdtemp(prefix="lock-", dir=work)
    repo = S3Repo(root, bucket, "repo")
    ok(["init", "--object-lock", "compliance:1"] + repo.flags(), env=repo.env)
    write_random(root + "/src/a.bin", mib(20, 9))
    ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    first = {k: repo.retain_until(k) for k in repo.objects("data/")}
    check(first and all(m == "COMPLIANCE" and u for u, m in first.values()), f"objectlock: packs without lock {first}")
    time.sleep(2.5)
    write_random(root + "/src/b.bin", mib(20, 9))
    t2 = datetime.datetime.now(datetime.timezone.utc)
    ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    sizes = repo.objects("data/")
    second = {k: repo.retain_until(k) for k in sizes}
    day = datetime.timedelta(days=1)
    slack = datetime.timedelta(seconds=5)
    # The newest snapshot holds a and b: every data pack (the only packs above 64 KiB here) is retained at least a
    # day from this backup, the older ones extended. Only the first snapshot's small tree pack may keep its date.
    extended = 0
    for k, (until, mode) in second.items():
        check(mode == "COMPLIANCE", f"objectlock: {k} mode {mode}")
        if sizes[k] >= 64 << 10 or k not in first:
            check(until >= t2 + day - slack, f"objectlock: {k} retained only until {until}, backup at {t2}")
        if k in first and sizes[k] >= 64 << 10:
            check(until > first[k][0], f"objectlock: {k} was not extended ({first[k][0]} -> {until})")
            extended += 1
    check(extended >= 2, f"objectlock: expected the first backup's data packs to be extended, got {extended}")
    # A backup of unchanged data stores nothing new and still extends every pack its snapshot references:
    # all but the first snapshot's tree pack.
    time.sleep(2.5)
    t3 = datetime.datetime.now(datetime.timezone.utc)
    same = ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    third = {k: repo.retain_until(k) for k in repo.objects("data/")}
    check(set(third) == set(second), "objectlock: an unchanged backup wrote packs")
    stale = [k for k, (until, _) in third.items() if until < t3 + day - slack]
    check(len(stale) <= 1 and all(sizes[k] < 64 << 10 for k in stale),
          f"objectlock: packs the newest snapshot references were not extended: {stale}")
    extended_again = len(third) - len(stale)
    # Now a.bin is gone from the source; after the next backup only the first snapshots reference its pack.
    os.remove(root + "/src/a.bin")
    time.sleep(1.5)
    ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    # A pack that no snapshot will ever reference: a backup of new data killed after its first pack upload. The
    # next backup (without that data) adopts it into the index; prune then wants it gone, but it is locked.
    packs_before_kill = set(repo.objects("data/"))
    write_random(root + "/src/c.bin", mib(40, 24))
    e = dict(os.environ)
    e.update(repo.env)
    proc = subprocess.Popen([ENGINE, "backup", root + "/src"] + repo.flags(), env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    orphans = set()
    while not orphans and time.monotonic() < deadline and proc.poll() is None:
        orphans = set(repo.objects("data/")) - packs_before_kill
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    check(orphans, "objectlock: the killed backup uploaded no pack")
    os.remove(root + "/src/c.bin")
    adopt = ok(["backup", root + "/src"] + repo.flags(), env=repo.env)
    check("adopted" in adopt.text, f"objectlock: the orphan pack was not adopted: {adopt!r}")
    before = repo.objects()
    f = engine(["forget", "--keep-last", "1", "--prune"] + repo.flags(), env=repo.env)
    after = repo.objects()
    # Prune deletes with a plain DELETE (a delete marker; no s3:DeleteObjectVersion): what it removed, locked
    # orphans included, is hidden, and every locked version is still in the bucket to restore from.
    gone = [k for k in before if k not in after and (k.startswith("data/") or k.startswith("snapshots/"))]
    kept = repo.versions()
    lost = [k for k in gone if not kept.get(k)]
    check(not lost, f"objectlock: prune destroyed locked object versions {lost}: {f!r}")
    for k in orphans:
        check(kept.get(k), f"objectlock: the locked orphan pack {k} lost its version")
    check(f.code in (0, 4), f"objectlock: prune exit {f.code}")
    v = engine(["verify", "--all", "--read-data"] + repo.flags(), env=repo.env)
    check(v.code == 0, f"objectlock: verify after the refused prune failed: {v!r}")
    r = ok(["restore", "latest", "--target", root + "/out"] + repo.flags(), env=repo.env)
    del r
    check(tree_digest(root + "/out/src") == tree_digest(root + "/src"), "objectlock: restore differs")
    said = [w for w in f.result.get("warnings", []) if "data/" in w][:2]
    FIGURES["objectlock"] = {"packs": len(second), "packsExtended": extended, "packsExtendedByUnchangedBackup":
                             extended_again, "unchangedBackupBytesStored": same.result.get("bytesStored"),
                             "forgetExit": f.code,
                             "lockedOrphanPacks": len(orphans), "warnings": len(f.result.get("warnings", [])),
                             "prunesays": said, "dataOrManifestsLost": 0}
    print(f"objectlock: {json.dumps(FIGURES['objectlock'])}", flush=True)
    shutil.rmtree(root)


# ---------------------------------------------------------------- 8. a large stream with bounded memory


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def stream_suite(work, gib, bound_mib):
    root = tempfile.mkdtemp(prefix="stream-", dir=work)
    repo = LocalRepo(root)
    ok(["init"] + repo.flags())
    total = gib << 30
    block = 1 << 20
    rng = random.Random(7)
    e = dict(os.environ)
    proc = subprocess.Popen([ENGINE, "backup", "--stdin", "--stdin-name", "big.stream"] + repo.flags(), env=e,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples = []
    done = threading.Event()
    sent = [0]

    def sampler():
        while not done.is_set():
            v = rss_kib(proc.pid)
            if v:
                samples.append((sent[0], v))
            time.sleep(0.5)

    out = {}

    def reader():
        out["stdout"] = proc.stdout.read()
        out["stderr"] = proc.stderr.read()

    threading.Thread(target=sampler, daemon=True).start()
    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    h = hashlib.sha256()
    t0 = time.monotonic()
    while sent[0] < total:
        # 1 MiB of 64 KiB random repeated: compresses 16:1 (little disk), never deduplicates.
        piece = rng.randbytes(65536) * 16
        h.update(piece)
        proc.stdin.write(piece)
        sent[0] += block
    proc.stdin.close()
    proc.wait()
    rt.join()
    done.set()
    secs = time.monotonic() - t0
    res = parse_result(out["stdout"].decode()) or parse_result(out["stderr"].decode())
    check(proc.returncode == 0, f"stream: backup exit {proc.returncode}: {out['stderr'][-2000:]!r}")
    check(res.get("bytesRead") == total, f"stream: bytesRead {res.get('bytesRead')} != {total}")
    peak = max(v for _, v in samples)
    q = lambda frac: max([v for s, v in samples if s <= total * frac] or [0])
    quarter, half, end = q(0.25), q(0.5), peak
    # Restore to a pipe and compare the digest, sampling RSS again.
    rproc = subprocess.Popen([ENGINE, "restore", "latest", "--stdout", "--path", "big.stream"] + repo.flags(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    rh = hashlib.sha256()
    rpeak = [0]
    rdone = threading.Event()

    def rsampler():
        while not rdone.is_set():
            v = rss_kib(rproc.pid)
            if v:
                rpeak[0] = max(rpeak[0], v)
            time.sleep(0.5)

    threading.Thread(target=rsampler, daemon=True).start()
    t1 = time.monotonic()
    n = 0
    while True:
        chunk = rproc.stdout.read(1 << 20)
        if not chunk:
            break
        rh.update(chunk)
        n += len(chunk)
    rproc.wait()
    rdone.set()
    rsecs = time.monotonic() - t1
    check(rproc.returncode == 0 and n == total and rh.digest() == h.digest(), "stream: restore differs")
    fig = {"gib": gib, "backupSeconds": round(secs, 1), "backupMiBps": round(total / secs / (1 << 20), 1),
           "bytesStored": res.get("bytesStored"), "rssSamples": len(samples),
           "rssMiBAt25pct": round(quarter / 1024), "rssMiBAt50pct": round(half / 1024),
           "rssPeakMiB": round(peak / 1024), "restoreSeconds": round(rsecs, 1),
           "restoreRssPeakMiB": round(rpeak[0] / 1024), "boundMiB": bound_mib}
    FIGURES["stream"] = fig
    print(f"stream: {json.dumps(fig)}", flush=True)
    check(peak / 1024 <= bound_mib, f"stream: backup RSS peaked at {peak // 1024} MiB > {bound_mib} MiB")
    check(rpeak[0] / 1024 <= bound_mib, f"stream: restore RSS peaked at {rpeak[0] // 1024} MiB > {bound_mib} MiB")
    # Flat: the second half adds little over the first quarter.
    check(peak <= quarter * 1.5 + 64 * 1024, f"stream: RSS grows with the stream ({fig})")
    shutil.rmtree(root)


def main():
    global ENGINE
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["kills", "faults", "kms", "canary", "objectlock", "stream"])
    ap.add_argument("--local", type=int, default=50)
    ap.add_argument("--s3", type=int, default=50)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--mib", type=int, default=40, help="kills: MiB of new data per run")
    ap.add_argument("--stall", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smaller data and fewer outages (for hack/test.sh)")
    ap.add_argument("--gib", type=int, default=10)
    ap.add_argument("--bound-mib", type=int, default=256)
    ap.add_argument("--out", default="")
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    global QUICK
    QUICK = a.quick
    ENGINE = env_required("BOTRT_ENGINE_BIN")
    work = a.work or tempfile.mkdtemp(prefix="botrt-rel-engine-")
    os.makedirs(work, exist_ok=True)
    t0 = time.monotonic()
    try:
        if a.part == "kills":
            FIGURES["seed"] = a.seed
            kill_suite(work, a.local, a.s3, a.seed, a.mib)
        elif a.part == "faults":
            fault_suite(work, a.stall)
        elif a.part == "kms":
            kms_suite(work)
        elif a.part == "canary":
            canary_suite(work)
        elif a.part == "objectlock":
            objectlock_suite(work)
        elif a.part == "stream":
            stream_suite(work, a.gib, a.bound_mib)
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"FAIL {a.part}: {e}", flush=True)
        return 1
    finally:
        FIGURES["seconds"] = round(time.monotonic() - t0, 1)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(FIGURES, f, indent=1, default=str)
    print(f"ok {a.part} ({FIGURES['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
