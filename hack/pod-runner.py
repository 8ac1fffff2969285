#!/usr/bin/env python3
"""BotRT local pod runner: acts as the node of a control plane that has no kubelet and no scheduler.

It watches Pods (list + watch with resourceVersion, relist on 410 Gone) and runs each Pending, unbound Pod whose
containers all use an allowed image as host processes, then reports the result through the `pods/NAME/status`
subresource (merge patch), so the Job controller of kube-controller-manager completes Jobs exactly as on a real node.

Pods are NOT bound to a node: an unbound Pod is deleted at once by the apiserver (no kubelet has to confirm), so Job
cleanup and namespace deletion keep working, and no fake Node object has to be registered.

Isolation (`--isolation`):
  mount (default when root): each container runs in its own mount namespace (`unshare --mount`) and chroot whose root
      is an overlay of the host root (writes go to a per-container tmpfs, as in a container's writable layer). Volumes
      are bind-mounted at their real mountPaths, the termination message file is bound at terminationMessagePath
      (default /dev/termination-log), /dev is a small tmpfs with null, zero, random, urandom, full, tty, pts and shm.
      The network namespace is the host's, so services on 127.0.0.1 are reachable; KUBERNETES_SERVICE_HOST/PORT
      point at the apiserver of the kubeconfig.
  none: plain host processes; mountPath prefixes in command, args and env values are rewritten to the host
      directories, and terminationMessagePath to a temp file (less faithful; for machines without root).

Images: containers whose image matches --engine-image (default "botrt-engine") run BOTRT_ENGINE_BIN (or
--engine-bin) when the command is empty or names botrt-engine; containers whose image matches --controller-image
(default "botrt-controller") run BOTRT_CONTROLLER_BIN (or --controller-bin) likewise, so the Deployment of
manifests/ runs with its Pod's service-account token and KUBERNETES_SERVICE_HOST/PORT (in-cluster configuration);
containers whose image matches --shell-image
(default "postgres|busybox|alpine|debian|botrt-shell") run their command on the host. A Pod with any other image is
left alone (logged once).

Volumes: secret, configMap, projected (secret, configMap, downwardAPI), downwardAPI, emptyDir are materialised in a
temp dir; persistentVolumeClaim maps to the PVC's annotation `botrt.io/local-path`, else --pvc NS/NAME=DIR, else
--pvc-root/NS/NAME (created); hostPath is the host path itself (or under --host-path-root).
Anything the container writes outside volumes is lost when it ends, as on a real node: put file:// repositories on a
hostPath or PVC volume, or share a host directory into every container with --bind DIR.

Secret values are never logged. Container output goes to files under --work-dir (path logged per container).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import requests

LOG = logging.getLogger("pod-runner")
RUNNER_CONDITION = "botrt.io/LocalRunner"
PVC_PATH_ANNOTATION = "botrt.io/local-path"
MAX_MESSAGE = 4096  # the kubelet's limit for a termination message
SETUP_FAILED_EXIT = 125


class RunnerError(Exception):
    """A failure that names what to fix; never carries secret values."""


class PodGone(Exception):
    """The Pod was deleted while it ran or its status was written."""


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes API access


class Kube:
    """A minimal API client: bearer token or client certificate, the cluster CA, JSON in and out."""

    def __init__(self, kubeconfig: str | None, context: str | None, tmpdir: str):
        cfg = load_kubeconfig(kubeconfig, context)
        self.server = cfg["server"].rstrip("/")
        self.session = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE, proxies and netrc from the environment: the kubeconfig alone decides.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = "botrt-pod-runner"
        self.session.headers["Accept"] = "application/json"
        if cfg.get("insecure"):
            self.session.verify = False
        elif cfg.get("ca_data"):
            path = os.path.join(tmpdir, "ca.crt")
            with open(path, "wb") as f:
                f.write(cfg["ca_data"])
            self.session.verify = path
        elif cfg.get("ca_file"):
            self.session.verify = cfg["ca_file"]
        if cfg.get("token"):
            self.session.headers["Authorization"] = "Bearer " + cfg["token"]
        elif cfg.get("cert_data") and cfg.get("key_data"):
            cert, key = os.path.join(tmpdir, "client.crt"), os.path.join(tmpdir, "client.key")
            for p, d in ((cert, cfg["cert_data"]), (key, cfg["key_data"])):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(d)
            self.session.cert = (cert, key)
        elif cfg.get("cert_file") and cfg.get("key_file"):
            self.session.cert = (cfg["cert_file"], cfg["key_file"])
        else:
            raise RunnerError("the kubeconfig user has neither a token nor a client certificate")

    def url(self, path: str) -> str:
        return self.server + path

    def request(self, method: str, path: str, *, params=None, body=None, content_type="application/json",
                timeout=30.0, ok_missing=False) -> Any:
        headers = {}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        r = self.session.request(method, self.url(path), params=params, data=data, headers=headers, timeout=timeout)
        if r.status_code == 404 and ok_missing:
            return None
        if r.status_code >= 300:
            try:
                msg = r.json().get("message", r.text[:300])
            except ValueError:
                msg = r.text[:300]
            if r.status_code == 404:
                raise PodGone(f"{method} {path}: 404 {msg}")
            raise RunnerError(f"{method} {path}: HTTP {r.status_code}: {msg}")
        return r.json() if r.content else None

    def get(self, path: str, ok_missing=False, params=None) -> Any:
        return self.request("GET", path, ok_missing=ok_missing, params=params)


def load_kubeconfig(path: str | None, context: str | None) -> dict:
    """Reads the kubeconfig through `kubectl config view --raw --flatten --minify -o json` (resolves relative paths
    and merged KUBECONFIG lists); falls back to reading a JSON file."""
    env = dict(os.environ)
    if path:
        env["KUBECONFIG"] = path
    if not env.get("KUBECONFIG"):
        raise RunnerError("KUBECONFIG is not set; pass --kubeconfig or export KUBECONFIG (hack/cluster.sh env)")
    cmd = ["kubectl", "config", "view", "--raw", "--flatten", "--minify", "-o", "json"]
    if context:
        cmd += ["--context", context]
    if shutil.which("kubectl"):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RunnerError(f"kubectl config view failed for {env['KUBECONFIG']}: {p.stderr.strip()[:300]}")
        doc = json.loads(p.stdout)
    else:
        try:
            with open(env["KUBECONFIG"].split(":")[0]) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise RunnerError(f"cannot read {env['KUBECONFIG']} without kubectl (only JSON kubeconfigs): {e}") from e
        ctx_name = context or doc.get("current-context")
        ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == ctx_name), None)
        if ctx is None:
            raise RunnerError(f"context {ctx_name!r} not found in {env['KUBECONFIG']}")
        doc["clusters"] = [c for c in doc["clusters"] if c["name"] == ctx["cluster"]]
        doc["users"] = [u for u in doc["users"] if u["name"] == ctx.get("user")]
    try:
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]["user"] if doc.get("users") else {}
    except (KeyError, IndexError) as e:
        raise RunnerError(f"the kubeconfig {env['KUBECONFIG']} has no cluster/user for context {context!r}") from e
    out: dict = {"server": cluster["server"], "insecure": cluster.get("insecure-skip-tls-verify", False)}
    if "certificate-authority-data" in cluster:
        out["ca_data"] = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        out["ca_file"] = cluster["certificate-authority"]
    if user.get("token"):
        out["token"] = user["token"]
    elif user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            out["token"] = f.read().strip()
    if "client-certificate-data" in user:
        out["cert_data"] = base64.b64decode(user["client-certificate-data"])
        out["key_data"] = base64.b64decode(user["client-key-data"])
    elif "client-certificate" in user:
        out["cert_file"], out["key_file"] = user["client-certificate"], user.get("client-key")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Pod preparation: volumes and environment


VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined references are replaced, `$$` escapes, unknown ones stay."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return VAR_REF.sub(sub, text)


def write_items(dirpath: str, data: dict[str, bytes], items: list | None, default_mode: int, what: str,
                optional: bool) -> None:
    os.makedirs(dirpath, exist_ok=True)
    if items:
        selected = []
        for it in items:
            if it["key"] not in data:
                if optional:
                    continue
                raise RunnerError(f"{what} has no key {it['key']!r}")
            selected.append((it["path"], data[it["key"]], it.get("mode", default_mode)))
    else:
        selected = [(k, v, default_mode) for k, v in data.items()]
    for rel, value, mode in selected:
        target = os.path.join(dirpath, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        os.chmod(target, mode)


class PodContext:
    """Everything a Pod's containers need: resolved volumes (name -> host dir) and API lookups with a cache."""

    def __init__(self, runner: "Runner", pod: dict, workdir: str):
        self.runner = runner
        self.kube = runner.kube
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.workdir = workdir
        self.volumes: dict[str, str] = {}
        self.readonly_volumes: set[str] = set()
        self._secrets: dict[str, dict | None] = {}
        self._configmaps: dict[str, dict | None] = {}

    def secret(self, name: str, optional: bool) -> dict[str, bytes] | None:
        if name not in self._secrets:
            self._secrets[name] = self.kube.get(f"/api/v1/namespaces/{self.ns}/secrets/{name}", ok_missing=True)
        obj = self._secrets[name]
        if obj is None:
            if optional:
                return None
            raise RunnerError(f'secret "{name}" not found in namespace {self.ns}')
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def configmap(self, name: str, optional: bool) -> dict[str, bytes] | None:
        if name not in self._configmaps:
            self._configmaps[name] = self.kube.get(f"/api/v1/namespaces/{self.ns}/configmaps/{name}", ok_missing=True)
        obj = self._configmaps[name]
        if obj is None:
            if optional:
                return None
            raise RunnerError(f'configmap "{name}" not found in namespace {self.ns}')
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def field(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": self.runner.node_name, "spec.serviceAccountName": self.pod["spec"].get(
                "serviceAccountName", "default"), "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            d = meta.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
        raise RunnerError(f"fieldRef {path!r} is not supported by the local pod runner")

    def prepare_volumes(self) -> None:
        base = os.path.join(self.workdir, "volumes")
        os.makedirs(base, exist_ok=True)
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            d = os.path.join(base, name)
            if "emptyDir" in vol:
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o777)
            elif "secret" in vol:
                s = vol["secret"]
                data = self.secret(s["secretName"], s.get("optional", False)) or {}
                write_items(d, data, s.get("items"), s.get("defaultMode", 0o644), f'secret "{s["secretName"]}"',
                            s.get("optional", False))
                self.readonly_volumes.add(name)
            elif "configMap" in vol:
                c = vol["configMap"]
                data = self.configmap(c["name"], c.get("optional", False)) or {}
                write_items(d, data, c.get("items"), c.get("defaultMode", 0o644), f'configmap "{c["name"]}"',
                            c.get("optional", False))
                self.readonly_volumes.add(name)
            elif "downwardAPI" in vol:
                self.write_downward(d, vol["downwardAPI"].get("items") or [], vol["downwardAPI"].get("defaultMode",
                                                                                                     0o644))
                self.readonly_volumes.add(name)
            elif "projected" in vol:
                mode = vol["projected"].get("defaultMode", 0o644)
                os.makedirs(d, exist_ok=True)
                for src in vol["projected"].get("sources") or []:
                    if "secret" in src:
                        s = src["secret"]
                        data = self.secret(s["name"], s.get("optional", False)) or {}
                        write_items(d, data, s.get("items"), mode, f'secret "{s["name"]}"', s.get("optional", False))
                    elif "configMap" in src:
                        c = src["configMap"]
                        data = self.configmap(c["name"], c.get("optional", False)) or {}
                        write_items(d, data, c.get("items"), mode, f'configmap "{c["name"]}"',
                                    c.get("optional", False))
                    elif "downwardAPI" in src:
                        self.write_downward(d, src["downwardAPI"].get("items") or [], mode)
                    else:
                        raise RunnerError(f"volume {name}: projected source {sorted(src)} is not supported")
                self.readonly_volumes.add(name)
            elif "persistentVolumeClaim" in vol:
                d = self.pvc_dir(vol["persistentVolumeClaim"]["claimName"])
                if vol["persistentVolumeClaim"].get("readOnly"):
                    self.readonly_volumes.add(name)
            elif "hostPath" in vol:
                hp = vol["hostPath"]["path"]
                d = os.path.join(self.runner.args.host_path_root, hp.lstrip("/")) if self.runner.args.host_path_root \
                    else hp
                kind = vol["hostPath"].get("type", "")
                if kind in ("DirectoryOrCreate", "") and not os.path.exists(d):
                    os.makedirs(d, exist_ok=True)
                elif kind == "FileOrCreate" and not os.path.exists(d):
                    os.makedirs(os.path.dirname(d), exist_ok=True)
                    open(d, "a").close()
                elif not os.path.exists(d):
                    raise RunnerError(f"volume {name}: hostPath {d} does not exist (type {kind})")
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise RunnerError(f"volume {name}: type {kinds} is not supported by the local pod runner")
            self.volumes[name] = d

    def write_downward(self, d: str, items: list, mode: int) -> None:
        os.makedirs(d, exist_ok=True)
        data = {}
        for it in items:
            if "fieldRef" not in it:
                raise RunnerError("downwardAPI: only fieldRef items are supported by the local pod runner")
            data[it["path"]] = self.field(it["fieldRef"]["fieldPath"]).encode()
        write_items(d, data, None, mode, "downwardAPI", False)

    def pvc_dir(self, claim: str) -> str:
        pvc = self.kube.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim}", ok_missing=True)
        if pvc is None:
            raise RunnerError(f'persistentvolumeclaim "{claim}" not found in namespace {self.ns}')
        ann = (pvc["metadata"].get("annotations") or {}).get(PVC_PATH_ANNOTATION)
        d = ann or self.runner.pvc_map.get(f"{self.ns}/{claim}") or self.runner.pvc_map.get(claim)
        if not d:
            if not self.runner.args.pvc_root:
                raise RunnerError(f"PVC {self.ns}/{claim} has no {PVC_PATH_ANNOTATION} annotation and no --pvc "
                                  "mapping, and --pvc-root is not set")
            d = os.path.join(self.runner.args.pvc_root, self.ns, claim)
        os.makedirs(d, exist_ok=True)
        return d

    def container_env(self, c: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        api = self.runner.api_host_port
        env.update({"KUBERNETES_SERVICE_HOST": api[0], "KUBERNETES_SERVICE_PORT": api[1],
                    "KUBERNETES_SERVICE_PORT_HTTPS": api[1], "KUBERNETES_PORT": f"tcp://{api[0]}:{api[1]}"})
        for ef in c.get("envFrom") or []:
            prefix = ef.get("prefix", "")
            if "secretRef" in ef:
                data = self.secret(ef["secretRef"]["name"], ef["secretRef"].get("optional", False)) or {}
            else:
                data = self.configmap(ef["configMapRef"]["name"], ef["configMapRef"].get("optional", False)) or {}
            for k, v in data.items():
                env[prefix + k] = v.decode("utf-8", "replace")
        for e in c.get("env") or []:
            if "valueFrom" in e:
                vf = e["valueFrom"]
                if "secretKeyRef" in vf:
                    r = vf["secretKeyRef"]
                    data = self.secret(r["name"], r.get("optional", False))
                    if data is None or r["key"] not in data:
                        if r.get("optional"):
                            continue
                        raise RunnerError(f'couldn\'t find key {r["key"]} in Secret {self.ns}/{r["name"]}')
                    env[e["name"]] = data[r["key"]].decode("utf-8", "replace")
                elif "configMapKeyRef" in vf:
                    r = vf["configMapKeyRef"]
                    data = self.configmap(r["name"], r.get("optional", False))
                    if data is None or r["key"] not in data:
                        if r.get("optional"):
                            continue
                        raise RunnerError(f'couldn\'t find key {r["key"]} in ConfigMap {self.ns}/{r["name"]}')
                    env[e["name"]] = data[r["key"]].decode("utf-8", "replace")
                elif "fieldRef" in vf:
                    env[e["name"]] = self.field(vf["fieldRef"]["fieldPath"])
                else:
                    raise RunnerError(f"env {e['name']}: valueFrom {sorted(vf)} is not supported")
            else:
                env[e["name"]] = expand(e.get("value", ""), env)
        return env


# ---------------------------------------------------------------------------------------------------------------------
# Running one container


MOUNT_SCRIPT = r"""
set -eu
fail() { echo "pod-runner setup: $*" >&2; exit 125; }
W="$1"; shift
R="$W/root"; O="$W/ovl"
mkdir -p "$R" "$O"
mount -t tmpfs -o mode=755 tmpfs "$O" || fail "tmpfs for the writable layer"
mkdir -p "$O/upper" "$O/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$O/upper,workdir=$O/work" "$R" || fail "overlay of /"
while IFS= read -r m; do
  [ -n "$m" ] || continue
  mount --rbind "$m" "$R$m" 2>/dev/null || echo "pod-runner setup: could not bind $m" >&2
done < "$W/host-mounts"
mount --rbind /proc "$R/proc" || fail "bind /proc"
mount --rbind /sys "$R/sys" || fail "bind /sys"
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev" || fail "tmpfs /dev"
for d in null zero full random urandom tty; do
  [ -e "/dev/$d" ] || continue
  : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d" || fail "bind /dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount --rbind /dev/pts "$R/dev/pts" 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || fail "tmpfs /dev/shm"
ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
# volume mounts: lines "src<TAB>dst<TAB>ro|rw<TAB>dir|file"
while IFS="$(printf '\t')" read -r src dst mode kind; do
  [ -n "$dst" ] || continue
  if [ "$kind" = file ]; then
    mkdir -p "$(dirname "$R$dst")"; [ -e "$R$dst" ] || : > "$R$dst"
  else
    mkdir -p "$R$dst"
  fi
  mount --bind "$src" "$R$dst" || fail "bind mount at $dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$R$dst" || fail "read-only remount of $dst"; fi
done < "$W/mounts"
WD="$1"; shift
mkdir -p "$R$WD"
# readOnlyRootFilesystem (--enforce-security-context): the image's root and the host mounts bound into it become
# read-only; volumes, /dev, /proc and /sys keep their own modes.
if [ -e "$W/readonly-root" ]; then
  mount -o remount,bind,ro "$R" || fail "read-only remount of the root"
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    mount -o remount,bind,ro "$R$m" 2>/dev/null || true
  done < "$W/host-mounts"
fi
exec unshare --root="$R" --wd="$WD" -- "$@"
"""


def host_mounts() -> list[str]:
    """Top-level mounts of the host (children of the root mount) other than /proc, /sys and /dev: the overlay of /
    does not include them, so they are bound into each container's root."""
    out = []
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    root_ids = {r[0] for r in rows if r[4] == "/"}
    for r in rows:
        mp = r[4].replace("\\040", " ")
        if r[1] in root_ids and mp != "/" and not any(mp == p or mp.startswith(p + "/") for p in ("/proc", "/sys",
                                                                                                   "/dev")):
            out.append(mp)
    return out


class ContainerRun:
    """One container: its command, environment and mounts, the process, and the terminated state."""

    def __init__(self, runner: "Runner", ctx: PodContext, c: dict, index: int, init: bool):
        self.runner, self.ctx, self.c, self.init = runner, ctx, c, init
        self.name = c["name"]
        self.dir = os.path.join(ctx.workdir, ("init-" if init else "c-") + self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.termination_file = os.path.join(self.dir, "termination-log")
        self.log_file = os.path.join(self.dir, "output.log")
        self.proc: subprocess.Popen | None = None
        self.started_at: str | None = None
        self.restart_count = 0
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.killed_reason: str | None = None
        self.last_state: dict | None = None

    def command(self, env: dict[str, str]) -> list[str]:
        image = self.c.get("image", "")
        cmd = [expand(x, env) for x in self.c.get("command") or []]
        args = [expand(x, env) for x in self.c.get("args") or []]
        product = self.runner.product(image)
        if product:
            name, binary, path, hint = product
            if not cmd or os.path.basename(cmd[0]) == name:
                if not binary:
                    raise RunnerError(f"container {self.name}: image {image} needs the {name} binary; set {hint}")
                # Run it at the path where mounts() binds it, not at its host path: a volume mounted over a
                # parent of the host path (an emptyDir at /tmp, say, when the checkout is under /tmp) hides it.
                cmd = [path] + cmd[1:]
        elif not cmd:
            if not args:
                raise RunnerError(f"container {self.name}: image {image} has no command and the local pod runner "
                                  "does not know its entrypoint; set command")
            cmd, args = args[:1], args[1:]
        return cmd + args

    def mounts(self) -> list[tuple[str, str, bool]]:
        out = []
        for m in self.c.get("volumeMounts") or []:
            src = self.ctx.volumes.get(m["name"])
            if src is None:
                raise RunnerError(f"container {self.name}: volumeMount {m['name']} names no volume of the pod")
            if m.get("subPath"):
                src = os.path.join(src, m["subPath"])
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            ro = bool(m.get("readOnly")) or m["name"] in self.ctx.readonly_volumes
            out.append((src, m["mountPath"], ro))
        for b in self.runner.args.bind:
            src, _, dst = b.partition(":")
            out.append((src, dst or src, False))
        product = self.runner.product(self.c.get("image", ""))
        if product and product[1]:
            # The image's binary at its path in the image, so commands such as `cp /usr/local/bin/botrt-engine
            # /shared/` (an init container installing the engine for a dump image) work as in the real image.
            out.append((product[1], product[2], True))
        return out

    def termination_path(self) -> str:
        return self.c.get("terminationMessagePath") or "/dev/termination-log"

    def security(self) -> dict:
        """The effective runAsUser, runAsGroup, fsGroup and readOnlyRootFilesystem (container over Pod settings)."""
        pod = self.ctx.pod["spec"].get("securityContext") or {}
        c = self.c.get("securityContext") or {}
        return {"uid": c.get("runAsUser", pod.get("runAsUser")), "gid": c.get("runAsGroup", pod.get("runAsGroup")),
                "fsGroup": pod.get("fsGroup"), "readOnlyRoot": bool(c.get("readOnlyRootFilesystem"))}

    def start(self) -> None:
        """Builds the environment and command, and starts the process; raises RunnerError before any process runs."""
        env = self.ctx.container_env(self.c)
        env.setdefault("HOSTNAME", self.ctx.name)
        enforce = self.runner.args.enforce_security_context and self.runner.isolation == "mount"
        sec = self.security() if enforce else {"uid": None, "gid": None, "fsGroup": None, "readOnlyRoot": False}
        # As a container runtime does for a user without a passwd entry: HOME=/ for non-root.
        env.setdefault("HOME", "/" if sec["uid"] not in (None, 0) else "/root")
        if "PATH" not in env:
            env["PATH"] = self.runner.container_path
        argv = self.command(env)
        mounts = self.mounts()
        with open(self.termination_file, "wb"):
            pass
        wd = self.c.get("workingDir") or "/"
        if enforce:
            os.chmod(self.termination_file, 0o666)  # the container's user writes its termination message
            marker = os.path.join(self.dir, "readonly-root")
            if sec["readOnlyRoot"]:
                open(marker, "w").close()
            elif os.path.exists(marker):
                os.remove(marker)
            if sec["uid"] is not None:
                # setpriv runs inside the container's root (an overlay of the host's, so it is there).
                gid = sec["gid"] if sec["gid"] is not None else sec["uid"]
                groups = f"--groups={sec['fsGroup']}" if sec["fsGroup"] is not None else "--clear-groups"
                argv = ["setpriv", f"--reuid={sec['uid']}", f"--regid={gid}", groups, "--"] + argv
        if self.runner.isolation == "mount":
            # Resolve the executable the way the container would (same filesystem as the host, plus volumes).
            if "/" not in argv[0] and not shutil.which(argv[0], path=env["PATH"]):
                raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
            with open(os.path.join(self.dir, "mounts"), "w") as f:
                # The container's root is an overlay of the host's /, so a path resolves there as on the host
                # (e.g. /var/run -> /run); resolve symlinks first, or the bind would follow them out of the root.
                for src, dst, ro in mounts:
                    kind = "file" if os.path.isfile(src) else "dir"
                    f.write(f"{src}\t{os.path.realpath(dst)}\t{'ro' if ro else 'rw'}\t{kind}\n")
                f.write(f"{self.termination_file}\t{os.path.realpath(self.termination_path())}\trw\tfile\n")
            with open(os.path.join(self.dir, "host-mounts"), "w") as f:
                f.write("".join(m + "\n" for m in self.runner.host_mounts))
            script = os.path.join(self.dir, "setup.sh")
            with open(script, "w") as f:
                f.write(MOUNT_SCRIPT)
            full = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", script, self.dir, wd] + argv
        else:
            rewrites = sorted(((dst, src) for src, dst, _ in mounts), key=lambda p: -len(p[0]))
            rewrites.insert(0, (self.termination_path(), self.termination_file))

            def rw(s: str) -> str:
                for dst, src in rewrites:
                    if s == dst or s.startswith(dst.rstrip("/") + "/"):
                        return src + s[len(dst):]
                    s = s.replace("=" + dst, "=" + src)
                return s

            argv = [rw(a) for a in argv]
            env = {k: rw(v) for k, v in env.items()}
            full = argv
            if "/" not in argv[0] and not shutil.which(argv[0], path=env["PATH"]):
                raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
            wd = rw(wd) if wd != "/" else self.dir
        out = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=wd if self.runner.isolation == "none" else "/")
        except OSError as e:
            raise StartError(f"cannot start {argv[0]}: {e.strerror}") from e
        finally:
            out.close()
        self.started_at = now_rfc3339()
        self.state = {"running": {"startedAt": self.started_at}}
        LOG.info("pod %s/%s container %s started (pid %d, output %s)", self.ctx.ns, self.ctx.name, self.name,
                 self.proc.pid, self.log_file)

    def kill(self, reason: str, grace: float) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        self.killed_reason = self.killed_reason or reason
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def hard():
            try:
                p.wait(timeout=max(grace, 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threading.Thread(target=hard, daemon=True).start()

    def finish(self, code: int) -> dict:
        message = b""
        try:
            with open(self.termination_file, "rb") as f:
                message = f.read(MAX_MESSAGE)
        except OSError:
            pass
        policy = self.c.get("terminationMessagePolicy", "File")
        if not message.strip() and code != 0 and policy == "FallbackToLogsOnError":
            message = tail(self.log_file, 80, 2048)
        if code < 0:  # killed by a signal: report as a shell would
            code = 128 + (-code)
        if code == SETUP_FAILED_EXIT and self.runner.isolation == "mount":
            setup = [ln for ln in tail(self.log_file, 20, 2048).decode("utf-8", "replace").splitlines()
                     if ln.startswith("pod-runner setup:")]
            if setup:
                LOG.error("pod %s/%s container %s: %s", self.ctx.ns, self.ctx.name, self.name, setup[-1])
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": self.started_at or now_rfc3339(), "finishedAt": now_rfc3339(),
                "containerID": f"botrt-local://{self.ctx.pod['metadata'].get('uid', '')}/{self.name}"}
        text = message.decode("utf-8", "replace").strip()
        if text:
            term["message"] = text
        self.state = {"terminated": term}
        LOG.info("pod %s/%s container %s exited %d%s", self.ctx.ns, self.ctx.name, self.name, code,
                 f" ({self.killed_reason})" if self.killed_reason else "")
        return term

    def status(self) -> dict:
        running = "running" in self.state
        return {"name": self.name, "image": self.c.get("image", ""), "imageID": "botrt-local://" + self.c.get(
            "image", ""), "ready": running and not self.init, "started": running, "restartCount": self.restart_count,
                "state": self.state, **({"lastState": self.last_state} if self.last_state else {}),
                **({"containerID": self.state[next(iter(self.state))].get("containerID")}
                                        if "terminated" in self.state else {})}


class StartError(RunnerError):
    """The container's process could not start (the kubelet reports StartError, exit code 128)."""


def tail(path: str, lines: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit * 4))
            data = f.read()
    except OSError:
        return b""
    return b"\n".join(data.splitlines()[-lines:])[-limit:]


# ---------------------------------------------------------------------------------------------------------------------
# Running one Pod


class PodRun:
    """Runs one Pod to completion: init containers in order, then all containers at once; writes status."""

    def __init__(self, runner: "Runner", pod: dict):
        self.runner = runner
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.cancelled = threading.Event()
        self.cancel_reason = ""
        self.lock = threading.Lock()
        self.containers: list[ContainerRun] = []
        self.inits: list[ContainerRun] = []
        self.start_time = now_rfc3339()
        self.deadline = None
        ads = pod["spec"].get("activeDeadlineSeconds")
        if ads is not None:
            self.deadline = time.monotonic() + float(ads)
        self.grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.workdir = os.path.join(runner.args.work_dir, f"{self.ns}_{self.name}_{self.uid[:8]}")

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status"

    def cancel(self, reason: str) -> None:
        with self.lock:
            if self.cancelled.is_set():
                return
            self.cancel_reason = reason
            self.cancelled.set()
            for c in self.inits + self.containers:
                c.kill(reason, self.grace)

    def patch(self, phase: str, reason: str | None = None, message: str | None = None,
              ready: bool = False, waiting: tuple[str, str] | None = None) -> None:
        initialized = all(c.state.get("terminated", {}).get("exitCode") == 0 for c in self.inits)
        conds = [
            {"type": "Initialized", "status": "True" if initialized else "False",
             "lastTransitionTime": self.start_time},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now_rfc3339()},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now_rfc3339()},
            {"type": RUNNER_CONDITION, "status": "True", "reason": "Runner" + self.runner.runner_id,
             "message": f"run by the BotRT local pod runner {self.runner.runner_id} as host processes",
             "lastTransitionTime": self.start_time},
        ]
        cstat = []
        for c in self.containers:
            s = c.status()
            if waiting and "waiting" in s["state"]:
                s["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
            cstat.append(s)
        status: dict = {"phase": phase, "conditions": conds, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                        "podIPs": [{"ip": "127.0.0.1"}], "startTime": self.start_time, "containerStatuses": cstat,
                        "reason": reason, "message": message}
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        self.runner.kube.request("PATCH", self.path, body={"status": status},
                                 content_type="application/merge-patch+json")

    def run(self) -> None:
        try:
            self._run()
        except PodGone:
            LOG.info("pod %s/%s is gone", self.ns, self.name)
            self.cancel("pod deleted")
        except Exception as e:  # noqa: BLE001 - the loop must survive any one pod
            LOG.exception("pod %s/%s: runner failure: %s", self.ns, self.name, e)
            try:
                self.patch("Failed", "RunnerError", f"the local pod runner failed: {e}"[:1000])
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.runner.finished(self)
            if not self.runner.args.keep_work_dirs:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self) -> None:
        spec = self.pod["spec"]
        os.makedirs(self.workdir, exist_ok=True)
        ctx = PodContext(self.runner, self.pod, self.workdir)
        self.inits = [ContainerRun(self.runner, ctx, c, i, True) for i, c in enumerate(spec.get("initContainers") or [])]
        self.containers = [ContainerRun(self.runner, ctx, c, i, False) for i, c in enumerate(spec["containers"])]
        # Volumes and environment: like the kubelet, wait (Pending, with a reason) until Secrets and the like exist.
        while True:
            try:
                ctx._secrets.clear()
                ctx._configmaps.clear()
                ctx.prepare_volumes()
                for c in self.inits + self.containers:
                    ctx.container_env(c.c)
                break
            except StartError:
                raise
            except RunnerError as e:
                LOG.warning("pod %s/%s waits: %s", self.ns, self.name, e)
                self.patch("Pending", waiting=("CreateContainerConfigError", str(e)[:1000]))
                if self.wait_or_deadline(5.0):
                    return
        restart = spec.get("restartPolicy", "Always")
        for c in self.inits:
            while True:
                code = self.run_container(c)
                if code is None:
                    return
                if code == 0:
                    break
                if restart == "Never":
                    self.patch("Failed", message=f"init container {c.name} failed with exit code {code}")
                    return
                if self.backoff(c):
                    return
        self.patch("Running", ready=False)
        results: dict[str, int | None] = {}
        threads = []
        for c in self.containers:
            t = threading.Thread(target=self.container_loop, args=(c, restart, results), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        if self.cancelled.is_set():
            self.finish_cancelled()
            return
        codes = [results.get(c.name) for c in self.containers]
        phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        self.patch(phase)
        LOG.info("pod %s/%s %s", self.ns, self.name, phase)

    def container_loop(self, c: ContainerRun, restart: str, results: dict) -> None:
        while True:
            code = self.run_container(c, report=True)
            results[c.name] = code
            if code is None or code == 0 and restart != "Always" or restart == "Never":
                return
            if self.backoff(c):
                return

    def backoff(self, c: ContainerRun) -> bool:
        """Waits before a restart (restartPolicy OnFailure/Always); True when the pod was cancelled meanwhile."""
        delay = min(self.runner.args.restart_backoff * (2 ** c.restart_count), 300.0)
        c.restart_count += 1
        term = c.state.get("terminated")
        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {delay:g}s restarting failed "
                                                                        f"container {c.name}"}}
        if term:
            c.last_state = term
        self.patch("Running")
        return self.wait_or_deadline(delay)

    def wait_or_deadline(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.cancelled.wait(min(0.5, max(0.0, end - time.monotonic()))):
                self.finish_cancelled()
                return True
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.cancel("DeadlineExceeded")
                self.finish_cancelled()
                return True
        return False

    def run_container(self, c: ContainerRun, report: bool = False) -> int | None:
        """Runs the container once; returns its exit code, or None when the pod was cancelled before it started."""
        if self.cancelled.is_set():
            return None
        try:
            with self.lock:
                if self.cancelled.is_set():
                    return None
                c.start()
        except StartError as e:
            c.started_at = now_rfc3339()
            c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(e)[:MAX_MESSAGE],
                                      "startedAt": c.started_at, "finishedAt": now_rfc3339()}}
            LOG.warning("pod %s/%s container %s: %s", self.ns, self.name, c.name, e)
            return 128
        if report and self.runner.patch_running:
            try:
                self.patch("Running", ready=all("running" in x.state for x in self.containers))
            except PodGone:
                self.cancel("pod deleted")
        assert c.proc is not None
        while True:
            try:
                code = c.proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if self.deadline is not None and time.monotonic() >= self.deadline and not self.cancelled.is_set():
                    LOG.warning("pod %s/%s passed activeDeadlineSeconds; stopping it", self.ns, self.name)
                    self.cancel("DeadlineExceeded")
        c.finish(code)
        return code

    def finish_cancelled(self) -> None:
        for c in self.inits + self.containers:
            if c.proc is not None:
                try:
                    c.proc.wait(timeout=self.grace + 5)
                except subprocess.TimeoutExpired:
                    pass
        if self.cancel_reason == "pod deleted":
            return
        if self.cancel_reason == "DeadlineExceeded":
            self.patch("Failed", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
        else:
            self.patch("Failed", "Terminated", f"the local pod runner stopped the pod: {self.cancel_reason}")


# ---------------------------------------------------------------------------------------------------------------------
# The watch loop


class Runner:
    """Lists and watches Pods, and runs the eligible ones on a bounded pool."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="botrt-pod-runner-")
        self.kube = Kube(args.kubeconfig, args.context, self.tmp)
        u = requests.utils.urlparse(self.kube.server)
        self.api_host_port = (u.hostname or "127.0.0.1", str(u.port or 443))
        self.engine_re = re.compile(args.engine_image)
        self.shell_re = re.compile(args.shell_image)
        self.engine_bin = args.engine_bin or os.environ.get("BOTRT_ENGINE_BIN")
        if self.engine_bin:
            self.engine_bin = os.path.abspath(self.engine_bin)
        self.controller_re = re.compile(args.controller_image)
        self.controller_bin = args.controller_bin or os.environ.get("BOTRT_CONTROLLER_BIN")
        if self.controller_bin:
            self.controller_bin = os.path.abspath(self.controller_bin)
        extra = [p for p in (args.extra_path or []) + [os.environ.get("BOTRT_PG_BIN", "")] if p]
        self.container_path = ":".join(extra + [os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
        self.isolation = args.isolation
        if self.isolation == "auto":
            self.isolation = "mount" if os.geteuid() == 0 and shutil.which("unshare") else "none"
        self.host_mounts = host_mounts() if self.isolation == "mount" else []
        self.node_name = args.node_name
        self.runner_id = f"{socket.gethostname()}-{os.getpid()}".replace(".", "-")[:40]
        self.patch_running = True
        self.pvc_map: dict[str, str] = {}
        for m in args.pvc:
            k, _, v = m.partition("=")
            if not v:
                raise RunnerError(f"--pvc {m!r}: use NAMESPACE/CLAIM=DIR or CLAIM=DIR")
            self.pvc_map[k] = v
        self.pool = ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="pod")
        self.lock = threading.Lock()
        self.active: dict[str, PodRun] = {}
        self.done: dict[str, float] = {}
        self.ignored: set[str] = set()
        self.stopping = threading.Event()
        self.response: requests.Response | None = None

    def list_paths(self) -> list[tuple[str, dict]]:
        """One list+watch per namespace and label selector (a pod matching any selector is run)."""
        paths = [f"/api/v1/namespaces/{ns}/pods" for ns in self.args.namespace] or ["/api/v1/pods"]
        selectors = [{"labelSelector": s} for s in self.args.selector] or [{}]
        return [(p, s) for p in paths for s in selectors]

    def eligible(self, pod: dict) -> bool:
        spec = pod["spec"]
        for c in (spec.get("initContainers") or []) + spec["containers"]:
            image = c.get("image", "")
            if not (self.product(image) or self.shell_re.search(image)):
                return False
        return True

    def product(self, image: str) -> tuple[str, str | None, str, str] | None:
        """For an image of one of BotRT's executables: (its name, the host binary, its path in the image, how to set
        the binary); None for other images."""
        if self.engine_re.search(image):
            return "botrt-engine", self.engine_bin, self.args.engine_path, "BOTRT_ENGINE_BIN or --engine-bin"
        controller_re = getattr(self, "controller_re", None)
        if controller_re is not None and controller_re.search(image):
            return ("botrt-controller", getattr(self, "controller_bin", None), self.args.controller_path,
                    "BOTRT_CONTROLLER_BIN or --controller-bin")
        return None

    def handle(self, etype: str, pod: dict, listed: bool = False) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if etype == "DELETED" or meta.get("deletionTimestamp"):
            with self.lock:
                run = self.active.get(uid)
            if run:
                run.cancel("pod deleted")
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if pod["spec"].get("nodeName"):
            return  # bound to a real node: not ours
        if phase == "Running" and listed and uid not in self.active:
            self.orphaned(pod)
            return
        if phase != "Pending":
            return
        with self.lock:
            if uid in self.active or uid in self.done or self.stopping.is_set():
                return
            if not self.eligible(pod):
                if uid not in self.ignored:
                    self.ignored.add(uid)
                    images = [c.get("image") for c in pod["spec"]["containers"]]
                    LOG.info("ignoring pod %s/%s: images %s match none of --engine-image, --controller-image and --shell-image",
                             meta["namespace"], meta["name"], images)
                return
            run = PodRun(self, pod)
            self.active[uid] = run
        LOG.info("pod %s/%s accepted", meta["namespace"], meta["name"])
        self.pool.submit(run.run)

    def orphaned(self, pod: dict) -> None:
        """A Running pod started by an earlier runner that is gone: its processes are lost, so it fails."""
        conds = (pod.get("status") or {}).get("conditions") or []
        mine = [c for c in conds if c.get("type") == RUNNER_CONDITION]
        if not mine or mine[0].get("reason") == "Runner" + self.runner_id:
            return
        meta = pod["metadata"]
        LOG.warning("pod %s/%s was left Running by runner %s; marking it Failed", meta["namespace"], meta["name"],
                    mine[0].get("reason"))
        try:
            self.kube.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                              body={"status": {"phase": "Failed", "reason": "NodeLost",
                                               "message": "the local pod runner that ran this pod stopped"}},
                              content_type="application/merge-patch+json")
        except (RunnerError, PodGone, requests.RequestException) as e:
            LOG.warning("could not mark pod %s/%s Failed: %s", meta["namespace"], meta["name"], e)

    def finished(self, run: PodRun) -> None:
        with self.lock:
            self.active.pop(run.uid, None)
            self.done[run.uid] = time.monotonic()
            if len(self.done) > 5000:
                for k in sorted(self.done, key=self.done.get)[:1000]:
                    del self.done[k]

    def watch_path(self, path: str, selector: dict) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 Gone; back off on errors."""
        rv: str | None = None
        failures = 0
        while not self.stopping.is_set():
            try:
                if rv is None:
                    lst = self.kube.get(path, params=selector)
                    rv = lst["metadata"]["resourceVersion"]
                    for pod in lst.get("items") or []:
                        self.handle("ADDED", pod, listed=True)
                params = dict(selector, watch="1", resourceVersion=rv, allowWatchBookmarks="true",
                              timeoutSeconds=str(self.args.watch_timeout))
                with self.kube.session.get(self.kube.url(path), params=params, stream=True,
                                           timeout=(10, self.args.watch_timeout + 30)) as r:
                    if r.status_code == 410:
                        rv = None
                        continue
                    if r.status_code >= 300:
                        raise RunnerError(f"watch {path}: HTTP {r.status_code}: {r.text[:300]}")
                    self.response = r
                    failures = 0
                    for line in r.iter_lines():
                        if self.stopping.is_set():
                            return
                        if not line:
                            continue
                        ev = json.loads(line)
                        t, obj = ev.get("type"), ev.get("object") or {}
                        if t == "ERROR":
                            if obj.get("code") == 410:
                                LOG.info("watch %s: resourceVersion too old; relisting", path)
                                rv = None
                                break
                            raise RunnerError(f"watch {path}: {obj.get('message')}")
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if t != "BOOKMARK":
                            self.handle(t, obj)
            except Exception as e:  # noqa: BLE001 - any failure of one watch leads to a relist after a backoff
                if self.stopping.is_set():
                    return
                failures += 1
                delay = min(30.0, 0.8 * (2 ** min(failures, 6))) * random.uniform(0.8, 1.2)
                LOG.warning("watch %s failed (%s); retrying in %.1fs", path, e, delay)
                if failures >= 3:
                    rv = None
                self.stopping.wait(delay)

    def stop(self, *_: Any) -> None:
        if self.stopping.is_set():
            return
        LOG.info("stopping: terminating running pods")
        self.stopping.set()
        with self.lock:
            runs = list(self.active.values())
        for run in runs:
            run.cancel("the runner received a stop signal")
        # The watch threads are daemons blocked in a read; they end with the process.

    def serve(self) -> int:
        LOG.info("watching pods at %s (%s; isolation %s; engine %s; concurrency %d)", self.kube.server,
                 ", ".join(self.args.namespace) or "all namespaces", self.isolation, self.engine_bin or "unset",
                 self.args.concurrency)
        threads = [threading.Thread(target=self.watch_path, args=ps, daemon=True) for ps in self.list_paths()]
        for t in threads:
            t.start()
        while not self.stopping.is_set():
            self.stopping.wait(0.5)
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        LOG.info("stopped")
        return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig path (default $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context (default: its current context)")
    p.add_argument("-n", "--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    p.add_argument("-l", "--selector", action="append", default=[],
                   help="label selector of the pods to run (repeatable: pods matching any of them)")
    p.add_argument("--engine-image", default=os.environ.get("BOTRT_RUNNER_ENGINE_IMAGE", "botrt-engine"),
                   help="regex of engine images (run BOTRT_ENGINE_BIN)")
    p.add_argument("--shell-image", default=os.environ.get("BOTRT_RUNNER_SHELL_IMAGE",
                                                           "postgres|busybox|alpine|debian|botrt-shell"),
                   help="regex of images whose command runs on the host")
    p.add_argument("--engine-bin", help="the botrt-engine executable (default $BOTRT_ENGINE_BIN)")
    p.add_argument("--engine-path", default="/usr/local/bin/botrt-engine",
                   help="where the engine image has the engine (bound there in engine-image containers)")
    p.add_argument("--controller-image", default=os.environ.get("BOTRT_RUNNER_CONTROLLER_IMAGE", "botrt-controller"),
                   help="regex of controller images (run BOTRT_CONTROLLER_BIN with the Pod's in-cluster service "
                        "account, e.g. the Deployment of manifests/)")
    p.add_argument("--controller-bin", help="the botrt-controller executable (default $BOTRT_CONTROLLER_BIN)")
    p.add_argument("--controller-path", default="/usr/local/bin/botrt-controller",
                   help="where the controller image has the controller (bound there in controller-image containers)")
    p.add_argument("--extra-path", action="append", help="directory put first on containers' PATH (repeatable; "
                                                         "$BOTRT_PG_BIN is added too)")
    p.add_argument("--isolation", choices=["auto", "mount", "none"], default="auto")
    p.add_argument("--enforce-security-context", action="store_true",
                   help="with mount isolation: run as runAsUser/runAsGroup (fsGroup as supplementary group) and "
                        "make the root read-only for readOnlyRootFilesystem, as a kubelet does")
    p.add_argument("--pvc", action="append", default=[], help="NAMESPACE/CLAIM=DIR or CLAIM=DIR (repeatable)")
    p.add_argument("--pvc-root", help="PVCs without a mapping use DIR/NAMESPACE/CLAIM")
    p.add_argument("--host-path-root", help="hostPath volumes live under this directory instead of /")
    p.add_argument("--bind", action="append", default=[], help="HOSTDIR[:PATH] shared into every container")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "botrt-pod-runner"))
    p.add_argument("--keep-work-dirs", action="store_true", help="keep per-pod work dirs (output logs) after runs")
    p.add_argument("--concurrency", type=int, default=4, help="pods run at once")
    p.add_argument("--restart-backoff", type=float, default=10.0, help="first restart delay (restartPolicy "
                                                                        "OnFailure), doubled each time up to 300 s")
    p.add_argument("--node-name", default="botrt-local-node", help="reported as spec.nodeName to fieldRefs")
    p.add_argument("--watch-timeout", type=int, default=290)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s pod-runner %(levelname)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    os.makedirs(args.work_dir, exist_ok=True)
    try:
        runner = Runner(args)
    except RunnerError as e:
        LOG.error("%s", e)
        return 2
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    return runner.serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
