"""Unit tests of hack/pod-runner.py's pure parts (no cluster): $(VAR) expansion, Secret/ConfigMap files, env
resolution, fieldRefs, engine command substitution, watch fan-out. Run: python3 -m unittest discover Tests/PodRunner
(hack/pod-runner-test.sh tests the runner against the real control plane)."""

import argparse
import base64
import importlib.util
import os
import stat
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("pod_runner", os.path.join(HERE, "..", "..", "hack", "pod-runner.py"))
pr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pr)


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


class FakeKube:
    """Answers GETs of Secrets and ConfigMaps from dicts, as the API would."""

    def __init__(self, secrets=None, configmaps=None):
        self.secrets, self.configmaps, self.calls = secrets or {}, configmaps or {}, []

    def get(self, path, ok_missing=False, params=None):
        self.calls.append(path)
        kind, name = path.split("/")[-2:]
        store = self.secrets if kind == "secrets" else self.configmaps
        if name not in store:
            return None
        if kind == "secrets":
            return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in store[name].items()}}
        return {"data": store[name]}


class FakeRunner:
    def __init__(self, kube, **args):
        self.kube = kube
        self.node_name = "botrt-local-node"
        self.api_host_port = ("127.0.0.1", "56443")
        defaults = dict(bind=[], host_path_root=None, pvc_root=None, engine_path="/usr/local/bin/botrt-engine")
        defaults.update(args)
        self.args = argparse.Namespace(**defaults)
        self.engine_re = pr.re.compile("botrt-engine")
        self.shell_re = pr.re.compile("busybox|postgres")
        self.engine_bin = "/opt/bin/botrt-engine"
        self.controller_re = pr.re.compile("botrt-controller")
        self.controller_bin = "/opt/bin/botrt-controller"
        self.args.controller_path = "/usr/local/bin/botrt-controller"
        self.pvc_map = {}

    product = pr.Runner.product


def pod(containers, volumes=None):
    return {"metadata": {"name": "p1", "namespace": "ns1", "uid": "u1", "labels": {"app": "x"}},
            "spec": {"containers": containers, "volumes": volumes or [], "serviceAccountName": "sa1"}}


class ExpandTests(unittest.TestCase):
    def test_kubelet_expansion(self):
        env = {"A": "1", "B": "two"}
        self.assertEqual(pr.expand("$(A)-$(B)", env), "1-two")
        self.assertEqual(pr.expand("$(MISSING)", env), "$(MISSING)")
        self.assertEqual(pr.expand("$$(A)", env), "$(A)")


class VolumeTests(unittest.TestCase):
    def test_secret_items_and_modes(self):
        with tempfile.TemporaryDirectory() as d:
            pr.write_items(d, {"k": b"v", "other": b"x"}, [{"key": "k", "path": "sub/file", "mode": 0o400}], 0o644,
                           "secret s", False)
            self.assertEqual(read(os.path.join(d, "sub/file"), "rb"), b"v")
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(d, "sub/file")).st_mode), 0o400)
            self.assertFalse(os.path.exists(os.path.join(d, "other")))
            with self.assertRaises(pr.RunnerError):
                pr.write_items(d, {}, [{"key": "absent", "path": "x"}], 0o644, "secret s", False)
            pr.write_items(d, {}, [{"key": "absent", "path": "x"}], 0o644, "secret s", True)  # optional: no error

    def test_prepare_volumes_materialises_secret_and_configmap(self):
        kube = FakeKube(secrets={"s": {"password": "pw"}}, configmaps={"c": {"a.conf": "x=1"}})
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(FakeRunner(kube), pod([], [
                {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "tmp", "emptyDir": {}},
            ]), d)
            ctx.prepare_volumes()
            self.assertEqual(read(os.path.join(ctx.volumes["sec"], "password")), "pw")
            self.assertEqual(read(os.path.join(ctx.volumes["cfg"], "a.conf")), "x=1")
            self.assertTrue(os.path.isdir(ctx.volumes["tmp"]))
            self.assertEqual(ctx.readonly_volumes, {"sec", "cfg"})

    def test_missing_secret_names_it(self):
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(FakeRunner(FakeKube()), pod([], [{"name": "v", "secret": {"secretName": "gone"}}]), d)
            with self.assertRaisesRegex(pr.RunnerError, 'secret "gone" not found in namespace ns1'):
                ctx.prepare_volumes()


class EnvTests(unittest.TestCase):
    def test_values_secrets_configmaps_fieldrefs(self):
        kube = FakeKube(secrets={"s": {"pw": "secret-value"}}, configmaps={"c": {"mode": "fast"}})
        ctx = pr.PodContext(FakeRunner(kube), pod([]), "/nonexistent")
        env = ctx.container_env({"env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ]})
        self.assertEqual((env["A"], env["B"], env["PW"], env["M"]), ("a", "a-b", "secret-value", "fast"))
        self.assertNotIn("OPT", env)
        self.assertEqual((env["POD"], env["APP"]), ("p1", "x"))
        self.assertEqual(env["KUBERNETES_SERVICE_PORT"], "56443")
        with self.assertRaisesRegex(pr.RunnerError, "couldn't find key nope in Secret ns1/s"):
            ctx.container_env({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]})


class CommandTests(unittest.TestCase):
    def run_for(self, container):
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(FakeRunner(FakeKube()), pod([container]), d)
            return pr.ContainerRun(ctx.runner, ctx, container, 0, False).command({"X": "1"})

    def test_engine_image_runs_the_engine_binary(self):
        # The engine runs at its image path, where mounts() binds the host binary: a volume over a parent of the
        # host path (an emptyDir at /tmp with the checkout under /tmp) must not hide it.
        self.assertEqual(self.run_for({"name": "e", "image": "reg/botrt-engine:1", "args": ["backup", "$(X)"]}),
                         ["/usr/local/bin/botrt-engine", "backup", "1"])
        self.assertEqual(
            self.run_for({"name": "e", "image": "botrt-engine", "command": ["/usr/local/bin/botrt-engine"],
                          "args": ["verify"]}), ["/usr/local/bin/botrt-engine", "verify"])
        # Another command in the engine image runs as given (e.g. cp of the engine into a shared volume).
        self.assertEqual(self.run_for({"name": "e", "image": "botrt-engine", "command": ["cp", "a", "b"]}),
                         ["cp", "a", "b"])

    def test_controller_image_runs_the_controller_binary_at_its_image_path(self):
        # The Deployment of manifests/ gives only args; the image's entrypoint is /usr/local/bin/botrt-controller.
        c = {"name": "controller", "image": "ghcr.io/botrt/botrt-controller:v0.1.0", "args": ["run", "--leader-elect"]}
        self.assertEqual(self.run_for(c), ["/usr/local/bin/botrt-controller", "run", "--leader-elect"])
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(FakeRunner(FakeKube()), pod([c]), d)
            mounts = pr.ContainerRun(ctx.runner, ctx, c, 0, False).mounts()
        self.assertIn(("/opt/bin/botrt-controller", "/usr/local/bin/botrt-controller", True), mounts)
        r = FakeRunner(FakeKube())
        r.controller_bin = None
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(r, pod([c]), d)
            with self.assertRaisesRegex(pr.RunnerError, "BOTRT_CONTROLLER_BIN"):
                pr.ContainerRun(r, ctx, c, 0, False).command({})

    def test_security_context_merges_pod_and_container_settings(self):
        c = {"name": "c", "image": "botrt-controller", "securityContext": {"readOnlyRootFilesystem": True,
                                                                           "runAsUser": 1000}}
        p = pod([c])
        p["spec"]["securityContext"] = {"runAsUser": 65532, "runAsGroup": 65533, "fsGroup": 65534}
        with tempfile.TemporaryDirectory() as d:
            ctx = pr.PodContext(FakeRunner(FakeKube()), p, d)
            sec = pr.ContainerRun(ctx.runner, ctx, c, 0, False).security()
        self.assertEqual(sec, {"uid": 1000, "gid": 65533, "fsGroup": 65534, "readOnlyRoot": True})

    def test_shell_image_needs_a_command(self):
        self.assertEqual(self.run_for({"name": "s", "image": "busybox", "command": ["sh", "-c", "echo $(X)"]}),
                         ["sh", "-c", "echo 1"])
        with self.assertRaisesRegex(pr.RunnerError, "has no command"):
            self.run_for({"name": "s", "image": "postgres:16"})


class WatchFanOutTests(unittest.TestCase):
    def test_one_watch_per_namespace_and_selector(self):
        r = pr.Runner.__new__(pr.Runner)
        r.args = argparse.Namespace(namespace=["a", "b"], selector=["x=1", "y=2"])
        self.assertEqual(len(r.list_paths()), 4)
        self.assertIn(("/api/v1/namespaces/b/pods", {"labelSelector": "y=2"}), r.list_paths())
        r.args = argparse.Namespace(namespace=[], selector=[])
        self.assertEqual(r.list_paths(), [("/api/v1/pods", {})])


if __name__ == "__main__":
    unittest.main()
