#!/usr/bin/env python3
"""Container images for the test bed's node, built without a daemon or a registry (none is
reachable): umoci assembles an OCI image layout from local files, and the layout is written as
a tar archive that `ctr images import` reads. The operator's own image is `make image`'s.

    images.py build --ref REF --out ARCHIVE [--entrypoint PATH] [--user UID:GID] SRC=DEST ...
    images.py pause OUT_ARCHIVE            the Pod sandbox image (node/pause.c, static)
    images.py relabel IN OUT REF KEY=VALUE  a copy of an image under another name, with a label
                                            (a "new image" of the same binary, for upgrades)
"""

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def umoci(*args):
    subprocess.run(["umoci", *args], check=True, capture_output=True)


def name_image(layout: Path, ref: str):
    """containerd names an imported image after the `io.containerd.image.name` annotation of
    its index entry (else the bare `org.opencontainers.image.ref.name`, a tag without a name)."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    for manifest in index["manifests"]:
        manifest.setdefault("annotations", {})["io.containerd.image.name"] = ref
    index_path.write_text(json.dumps(index))


def write_archive(layout: Path, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, arcname=entry.name)
    tmp.rename(out)


def build(ref, out, files, entrypoint=None, user=None, labels=()):
    tag = "image"
    with tempfile.TemporaryDirectory() as tmp:
        layout, bundle = Path(tmp) / "layout", Path(tmp) / "bundle"
        umoci("init", "--layout", str(layout))
        umoci("new", "--image", f"{layout}:{tag}")
        umoci("unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle))
        rootfs = bundle / "rootfs"
        for src, dest in files:
            target = rootfs / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        umoci("repack", "--image", f"{layout}:{tag}", str(bundle))
        config = ["config", "--image", f"{layout}:{tag}"]
        if entrypoint:
            config += ["--config.entrypoint", entrypoint]
        if user:
            config += ["--config.user", user]
        for label in labels:
            config += ["--config.label", label]
        umoci(*config)
        umoci("gc", "--layout", str(layout))
        name_image(layout, ref)
        write_archive(layout, Path(out))


def pause(out):
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(HERE / "node" / "pause.c")], check=True)
        build("registry.k8s.io/pause:bucketwire-testbed", out, [(binary, "/pause")], entrypoint="/pause",
              user="65535:65535")


def relabel(src, out, ref, labels):
    """The image in archive `src` under name `ref` with extra labels: a new image config, so a
    new digest, over the same layers."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout"
        with tarfile.open(src) as tar:
            tar.extractall(layout, filter="tar")
        index = json.loads((layout / "index.json").read_text())
        tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        config = ["config", "--image", f"{layout}:{tag}"]
        for label in labels:
            config += ["--config.label", label]
        umoci(*config)
        umoci("gc", "--layout", str(layout))
        index = json.loads((layout / "index.json").read_text())
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
        (layout / "index.json").write_text(json.dumps(index))
        name_image(layout, ref)
        write_archive(layout, Path(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--ref", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--entrypoint")
    b.add_argument("--user")
    b.add_argument("files", nargs="+", help="SRC=DEST")
    p = sub.add_parser("pause")
    p.add_argument("out")
    r = sub.add_parser("relabel")
    r.add_argument("src")
    r.add_argument("out")
    r.add_argument("ref")
    r.add_argument("labels", nargs="+")
    args = parser.parse_args()
    if args.command == "build":
        files = [tuple(f.split("=", 1)) for f in args.files]
        build(args.ref, args.out, files, args.entrypoint, args.user)
    elif args.command == "pause":
        pause(args.out)
    else:
        relabel(args.src, args.out, args.ref, args.labels)


if __name__ == "__main__":
    sys.exit(main())
