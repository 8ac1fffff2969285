#!/usr/bin/env python3
"""Checks images/*/Containerfile without a container engine (CI has none).

For each of images/controller and images/engine:
  - the file parses: known instructions, line continuations, exec-form ENTRYPOINT/CMD are JSON arrays of strings,
    every `COPY --from=` names an earlier stage, every ${ARG} used in FROM is declared before the first FROM;
  - the build stage runs `swift build -c release --static-swift-stdlib --product <product>` for a product that
    Package.swift declares, and installs it under /out at the entrypoint's path;
  - the final stage copies exactly that file from the build stage, runs as a numeric non-root USER uid:gid, and its
    ENTRYPOINT is ["/usr/local/bin/<product>"];
  - the engine image carries botrt-objects at /usr/local/bin/botrt-objects the same way (EXTRA_PRODUCTS);
  - the runtime stage installs the shared libraries the product needs, and no compiler or -dev package; with
    --bin-path, the built product's direct dependencies (readelf -d) are compared with them (Swift's runtime
    libraries are replaced by their own dependencies: the release build links them statically);
and across the repository:
  - manifests/deployment.yaml runs the controller image without overriding its entrypoint, as the image's user, and
    passes an --engine-image naming botrt-engine;
  - the controller's default engine path (Sources/Reconcilers/BackupPolicy/ChildrenBuilders.swift) is the engine
    image's entrypoint, and the Jobs' runAsUser is the engine image's user (the node's flows then run them).

  python3 hack/check-images.py [--bin-path "$(swift build --show-bin-path)"]
Exit 0 when everything holds; otherwise one line per problem naming the file, and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
PRODUCTS = {"controller": "botrt-controller", "engine": "botrt-engine"}
# Further products an image carries beside its entrypoint, in the same directory (the Jobs run them with `command:`):
# each is built and installed by the build stage, copied by a `FROM scratch` stage, and copied by the final stage to
# the same path, like the entrypoint's product.
EXTRA_PRODUCTS = {"engine": ["botrt-objects"]}
# Shared libraries a product may need, and the Debian (bookworm) package that provides each. The base
# (debian:bookworm-slim) already has libc6, libgcc-s1, libstdc++6, zlib1g and libzstd1.
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"}
LIB_PACKAGES = {
    "libcurl.so.4": "libcurl4", "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3", "libyaml-0.so.2": "libyaml-0-2",
    "libzstd.so.1": "libzstd1", "libz.so.1": "zlib1g", "libc.so.6": "libc6", "libm.so.6": "libc6",
    "libpthread.so.0": "libc6", "libdl.so.2": "libc6", "librt.so.1": "libc6", "libutil.so.1": "libc6",
    "libresolv.so.2": "libc6", "ld-linux-x86-64.so.2": "libc6", "linux-vdso.so.1": "libc6",
    "libgcc_s.so.1": "libgcc-s1", "libstdc++.so.6": "libstdc++6", "libxml2.so.2": "libxml2",
}
# Swift's runtime and Foundation: dynamic in a debug build, static with --static-swift-stdlib.
SWIFT_RUNTIME = re.compile(r"^(libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime|libicu)")

problems: list[str] = []


def problem(where: str, msg: str) -> None:
    problems.append(f"{os.path.relpath(where, REPO)}: {msg}")


def logical_lines(path: str) -> list[tuple[int, str]]:
    out, buf, start = [], "", 0
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if buf and line.lstrip().startswith("#"):
                continue  # comment lines inside a continuation are dropped, as BuildKit does
            if not buf:
                start = n
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            out.append((start, buf.strip()))
            buf = ""
    if buf:
        out.append((start, buf.strip()))
    return out


def parse(path: str) -> tuple[dict, list[dict]]:
    """Returns (ARGs before the first FROM, stages: {name, base, instructions: [(n, INSTR, rest)]})."""
    args: dict[str, str | None] = {}
    stages: list[dict] = []
    for n, line in logical_lines(path):
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr not in INSTRUCTIONS:
            problem(path, f"line {n}: unknown instruction {instr}")
            continue
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v or None
            continue
        if instr == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+[Aa][Ss]\s+(\S+))?", rest)
            if not m:
                problem(path, f"line {n}: FROM {rest!r} is not `FROM image [AS name]`")
                continue
            for ref in re.findall(r"\$\{?(\w+)", m.group(1)):
                if ref not in args:
                    problem(path, f"line {n}: FROM uses ${{{ref}}}, which no ARG before the first FROM declares")
            stages.append({"name": m.group(2), "base": m.group(1), "line": n, "instructions": []})
            continue
        if not stages:
            problem(path, f"line {n}: {instr} before the first FROM")
            continue
        if instr in ("ENTRYPOINT", "CMD") and rest.startswith("["):
            try:
                v = json.loads(rest)
                if not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
                    raise ValueError("not a non-empty array of strings")
            except ValueError as e:
                problem(path, f"line {n}: {instr} exec form is not a JSON array of strings: {e}")
        if instr == "COPY":
            m = re.search(r"--from=(\S+)", rest)
            if m and m.group(1) not in [s["name"] for s in stages[:-1]]:
                problem(path, f"line {n}: COPY --from={m.group(1)} names no earlier stage")
        stages[-1]["instructions"].append((n, instr, rest))
    if not stages:
        problem(path, "no FROM")
    return args, stages


def check_image(kind: str, product: str, bin_path: str | None, declared: set[str]) -> dict:
    path = os.path.join(REPO, "images", kind, "Containerfile")
    if not os.path.isfile(path):
        problem(path, "missing")
        return {}
    args, stages = parse(path)
    if len(stages) < 2:
        problem(path, "not a multi-stage build (a build stage and a runtime stage)")
        return {}
    if product not in declared:
        problem(path, f"Package.swift declares no executable product {product}")
    build, final = stages[0], stages[-1]
    entry_path = f"/usr/local/bin/{product}"
    runs = " ".join(rest for _, i, rest in build["instructions"] if i == "RUN")
    swift = re.search(r"swift build ([^&;]*)", runs)
    if not swift:
        problem(path, "the build stage runs no `swift build`")
    else:
        flags = swift.group(1).split()
        for want in (["-c", "release"], ["--static-swift-stdlib"], ["--product", product]):
            if not any(flags[i:i + len(want)] == want for i in range(len(flags))):
                problem(path, f"`swift build` lacks {' '.join(want)}")
    if f"/out{entry_path}" not in runs:
        problem(path, f"the build stage does not install {product} at /out{entry_path}")
    fin = final["instructions"]
    entry = [json.loads(rest) for _, i, rest in fin if i == "ENTRYPOINT" and rest.startswith("[")]
    if entry != [[entry_path]]:
        problem(path, f"ENTRYPOINT of the final stage is {entry}, want [[\"{entry_path}\"]]")
    copies = [rest for _, i, rest in fin if i == "COPY"]
    # The product comes from the build stage, directly or through a stage `FROM ${ARG} AS name` whose ARG defaults
    # to the build stage; the ARG's other choice, a `FROM scratch` stage, must put the product at the same path.
    sources = {build["name"]}
    for st in stages[1:-1]:
        ref = re.fullmatch(r"\$\{?(\w+)\}?", st["base"])
        if ref and args.get(ref.group(1)) == build["name"]:
            sources.add(st["name"])
    for st in stages[1:-1]:
        if st["base"] == "scratch":
            if not any(re.fullmatch(rf"\S+\s+/out{re.escape(entry_path)}", rest)
                       for _, i, rest in st["instructions"] if i == "COPY"):
                problem(path, f"stage {st['name']} does not COPY the product to /out{entry_path}")
    if not any(re.fullmatch(rf"--from=(\S+)\s+/out{re.escape(entry_path)}\s+{re.escape(entry_path)}", c)
               and re.fullmatch(r"--from=(\S+).*", c).group(1) in sources for c in copies):
        problem(path, f"the final stage does not COPY --from={build['name']} /out{entry_path} {entry_path}")
    extras = EXTRA_PRODUCTS.get(kind, [])
    for extra in extras:
        extra_path = f"/usr/local/bin/{extra}"
        if extra not in declared:
            problem(path, f"Package.swift declares no executable product {extra}")
        builds = [m.group(1).split() for m in re.finditer(r"swift build ([^&;]*)", runs)]
        if not any(f[i:i + 2] == ["--product", extra] for f in builds for i in range(len(f))):
            problem(path, f"the build stage does not `swift build --product {extra}`")
        if f"/out{extra_path}" not in runs:
            problem(path, f"the build stage does not install {extra} at /out{extra_path}")
        for st in stages[1:-1]:
            if st["base"] == "scratch":
                if not any(re.fullmatch(rf"\S+\s+/out{re.escape(extra_path)}", rest)
                           for _, i, rest in st["instructions"] if i == "COPY"):
                    problem(path, f"stage {st['name']} does not COPY {extra} to /out{extra_path}")
        if not any(re.fullmatch(rf"--from=(\S+)\s+/out{re.escape(extra_path)}\s+{re.escape(extra_path)}", c)
                   and re.fullmatch(r"--from=(\S+).*", c).group(1) in sources for c in copies):
            problem(path, f"the final stage does not COPY --from={build['name']} /out{extra_path} {extra_path}")
    users = [rest for _, i, rest in fin if i == "USER"]
    uid = None
    if not users:
        problem(path, "the final stage sets no USER (it would run as root)")
    else:
        m = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
        if not m:
            problem(path, f"USER {users[-1]} is not numeric uid:gid (runAsNonRoot cannot check a name)")
        elif int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
            problem(path, f"USER {users[-1]} is root")
        else:
            uid = int(m.group(1))
    final_runs = " ".join(rest for _, i, rest in fin if i == "RUN")
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates)\b", final_runs))
    for bad in sorted(p for p in installed if p.endswith("-dev")):
        problem(path, f"the runtime stage installs the development package {bad}")
    if re.search(r"\b(swift|gcc|clang|build-essential)\b", final_runs):
        problem(path, "the runtime stage installs a compiler")
    need = {"libcurl4", "libssl3", "libyaml-0-2", "libzstd1"}
    for p in sorted(need - installed):
        problem(path, f"the runtime stage does not install {p}")
    if bin_path:
        for p in [product] + extras:
            check_libraries(path, os.path.join(bin_path, p), installed | BASE_PACKAGES)
    return {"uid": uid, "entrypoint": entry_path}


def needed(path: str) -> list[str]:
    """The DT_NEEDED entries of an ELF file (its direct shared-library dependencies)."""
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def resolve(name: str, binary: str) -> str | None:
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == name and len(parts) >= 3 and parts[1] == "=>":
            return parts[2]
    return None


def check_libraries(path: str, binary: str, available: set[str]) -> None:
    """The libraries the release build needs: the product's direct dependencies, with Swift's runtime libraries
    replaced by their own non-Swift dependencies (--static-swift-stdlib links the Swift libraries in, not those)."""
    if not os.access(binary, os.X_OK):
        problem(path, f"{binary} is not built")
        return
    libs, seen, todo = set(), set(), list(needed(binary))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if SWIFT_RUNTIME.match(name):
            where = resolve(name, binary)
            if where:
                todo.extend(needed(where))
            continue
        libs.add(name)
    for name in sorted(libs):
        pkg = LIB_PACKAGES.get(name)
        if pkg is None:
            problem(path, f"{os.path.basename(binary)} needs {name}, which check-images.py does not know; add it to "
                          "LIB_PACKAGES with its Debian package, and install that package in the runtime stage")
        elif pkg not in available:
            problem(path, f"{os.path.basename(binary)} needs {name} ({pkg}), which the runtime stage lacks")


def declared_products() -> set[str]:
    text = open(os.path.join(REPO, "Package.swift")).read()
    return set(re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', text))


def check_repository(images: dict) -> None:
    dep_path = os.path.join(REPO, "manifests", "deployment.yaml")
    dep = yaml.safe_load(open(dep_path))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ctl, eng = images.get("controller", {}), images.get("engine", {})
    if "botrt-controller" not in c["image"]:
        problem(dep_path, f"the container image {c['image']} is not a botrt-controller image")
    if c.get("command") not in (None, [ctl.get("entrypoint")]):
        problem(dep_path, f"command {c['command']} overrides the image's entrypoint {ctl.get('entrypoint')}")
    run_as = c.get("securityContext", {}).get("runAsUser", pod.get("securityContext", {}).get("runAsUser"))
    if ctl.get("uid") is not None and run_as != ctl["uid"]:
        problem(dep_path, f"runAsUser {run_as} differs from the controller image's USER {ctl['uid']}")
    engine_args = [a for a in c.get("args", []) if a.startswith("--engine-image=")]
    if len(engine_args) != 1 or "botrt-engine" not in engine_args[0]:
        problem(dep_path, f"want one --engine-image= naming a botrt-engine image, got {engine_args}")
    builders = os.path.join(REPO, "Sources", "Reconcilers", "BackupPolicy", "ChildrenBuilders.swift")
    text = open(builders).read()
    m = re.search(r'enginePath: String = "([^"]+)"', text)
    if not m or m.group(1) != eng.get("entrypoint"):
        problem(builders, f"the default enginePath {m and m.group(1)} is not the engine image's entrypoint "
                          f"{eng.get('entrypoint')}")
    m = re.search(r"runAsUser: Int64 = (\d+)", text)
    if not m or (eng.get("uid") is not None and int(m.group(1)) != eng["uid"]):
        problem(builders, f"the Jobs' default runAsUser {m and m.group(1)} is not the engine image's USER "
                          f"{eng.get('uid')}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-path", help="swift build --show-bin-path: also check the built products' shared libraries")
    a = p.parse_args()
    declared = declared_products()
    if a.bin_path and not shutil.which("readelf"):
        print("check-images: readelf is missing (Debian package binutils; hack/install-deps.sh installs it)",
              file=sys.stderr)
        return 1
    images = {kind: check_image(kind, product, a.bin_path, declared) for kind, product in PRODUCTS.items()}
    check_repository(images)
    for line in problems:
        print(f"check-images: {line}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-images: ok ({', '.join(f'images/{k}/Containerfile' for k in PRODUCTS)}"
          f"{', shared libraries of the built products' if a.bin_path else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
