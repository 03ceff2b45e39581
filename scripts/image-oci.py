#!/usr/bin/env python3
"""`make image`: the Dockerfile's image, built without a container engine.

Runs the Dockerfile's build-stage commands on the host (the same `cargo build`, the same
scripts/image-rootfs.sh), then writes the rootfs as the image's one layer with umoci and gives it
the configuration of the Dockerfile's final stage (USER, ENTRYPOINT, CMD, LABEL). Both builds thus
read one definition; anything in the Dockerfile this script cannot reproduce (another RUN, an ENV,
a base image in the final stage...) is an error here rather than a silent difference.

Writes an OCI image layout as a tar archive: index.json holds one manifest, annotated with
org.opencontainers.image.ref.name=<tag> (skopeo's `oci-archive:<file>:<tag>`) and
io.containerd.image.name=<repository>:<tag> (`ctr images import` names the image with it).

    scripts/image-oci.py --repository ghcr.io/bucketwire/bucketwire --tag 0.1.0 \
        --archive target/image/bucketwire.oci.tar [--work target/image/work] [--cargo cargo]
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTFS_SCRIPT = "scripts/image-rootfs.sh"
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", "<"}


class DockerfileError(Exception):
    pass


def instructions(text):
    """The Dockerfile's instructions as (KEYWORD, arguments), continuations joined, comments dropped."""
    result, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    if current:
        raise DockerfileError("the Dockerfile ends inside a line continuation")
    return result


def stages(text):
    """[(FROM arguments, [(KEYWORD, arguments), ...]), ...]"""
    result = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append((rest, []))
        elif not result:
            raise DockerfileError(f"make image cannot reproduce {keyword} before the first FROM")
        else:
            result[-1][1].append((keyword, rest))
    return result


def exec_form(keyword, rest):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f'{keyword} must be in exec form (a JSON array of strings): {keyword} {rest}')
    return value


def parse(text):
    """The build commands and the runtime configuration the Dockerfile defines.

    Returns {"cargo": [argv], "rootfs": (binary, outdir), "user", "entrypoint", "cmd", "labels"}.
    """
    all_stages = stages(text)
    if len(all_stages) != 2:
        raise DockerfileError(f"expected two stages (build, runtime), found {len(all_stages)}")
    (build_from, build), (runtime_from, runtime) = all_stages
    if not build_from.lower().endswith(" as build"):
        raise DockerfileError(f"the first stage must be named build: FROM {build_from}")
    spec = {"cargo": None, "rootfs": None}
    for keyword, rest in build:
        if keyword in ("WORKDIR", "COPY"):
            continue  # the host builds in the checkout itself
        if keyword != "RUN":
            raise DockerfileError(f"make image cannot reproduce the build stage's {keyword} {rest}")
        argv = shlex.split(rest)
        if any(token in SHELL_OPERATORS for token in argv):
            raise DockerfileError(f"one command per RUN, no shell operators: RUN {rest}")
        if argv[:2] == ["cargo", "build"] and spec["cargo"] is None:
            spec["cargo"] = argv[1:]
        elif argv[:1] == [ROOTFS_SCRIPT] and len(argv) == 3 and spec["rootfs"] is None:
            spec["rootfs"] = (argv[1], argv[2])
        else:
            raise DockerfileError(f"make image cannot reproduce the build stage's RUN {rest}")
    if spec["cargo"] is None or spec["rootfs"] is None:
        raise DockerfileError(f"the build stage must RUN one `cargo build ...` and one `{ROOTFS_SCRIPT} <binary> <outdir>`")
    binary, outdir = spec["rootfs"]
    if not binary.startswith("target/"):
        raise DockerfileError(f"the binary must be Cargo's output under target/: {binary}")

    if runtime_from.strip() != "scratch":
        raise DockerfileError(f"the runtime stage must be FROM scratch, not FROM {runtime_from}")
    spec.update(user=None, entrypoint=None, cmd=None, labels={})
    copies = 0
    for keyword, rest in runtime:
        if keyword == "COPY":
            if rest.split() != ["--from=build", outdir.rstrip("/") + "/", "/"]:
                raise DockerfileError(f"the runtime stage may only COPY --from=build {outdir.rstrip('/')}/ / (found COPY {rest})")
            copies += 1
        elif keyword == "USER":
            spec["user"] = rest
        elif keyword == "ENTRYPOINT":
            spec["entrypoint"] = exec_form(keyword, rest)
        elif keyword == "CMD":
            spec["cmd"] = exec_form(keyword, rest)
        elif keyword == "LABEL":
            for pair in shlex.split(rest):
                key, sep, value = pair.partition("=")
                if not sep or not key:
                    raise DockerfileError(f"LABEL must be key=value pairs: LABEL {rest}")
                spec["labels"][key] = value
        else:
            raise DockerfileError(f"make image cannot reproduce the runtime stage's {keyword} {rest}")
    if copies != 1 or not spec["user"] or not spec["entrypoint"]:
        raise DockerfileError("the runtime stage needs exactly one COPY of the rootfs, a USER and an ENTRYPOINT")
    return spec


def run(argv, **kwargs):
    print("+ " + shlex.join(str(a) for a in argv), flush=True)
    subprocess.run([str(a) for a in argv], check=True, cwd=ROOT, **kwargs)


def cargo_target_dir(cargo):
    out = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def write_archive(layout, archive):
    """The layout as a tar archive (the format `ctr images import` and skopeo's oci-archive read)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(path, arcname=path.relative_to(layout).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    partial.replace(archive)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--archive", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=ROOT / "target/image/work")
    parser.add_argument("--cargo", default=os.environ.get("CARGO", "cargo"))
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    args = parser.parse_args()
    archive = args.archive if args.archive.is_absolute() else Path.cwd() / args.archive
    work = args.work if args.work.is_absolute() else Path.cwd() / args.work

    try:
        spec = parse(args.dockerfile.read_text())
    except DockerfileError as e:
        sys.exit(f"image-oci: {args.dockerfile}: {e}")
    if shutil.which("umoci") is None:
        sys.exit("image-oci: umoci is not installed (make image-tools installs it)")

    # The build stage, on the host.
    run([args.cargo, *spec["cargo"]])
    binary = cargo_target_dir(args.cargo) / spec["rootfs"][0].removeprefix("target/")
    layout, bundle = work / "layout", work / "bundle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # The runtime stage: FROM scratch (an image without layers), the rootfs as its one layer,
    # then the configuration. The layer is made by unpack + repack, not `umoci insert`: umoci
    # 0.4.7's insert writes a tar stream without its end-of-archive blocks.
    image = f"{layout}:{args.tag}"
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", image])
    run(["umoci", "unpack", *rootless, "--image", image, bundle])
    run([ROOT / ROOTFS_SCRIPT, binary, bundle / "rootfs"])
    run(["umoci", "repack", *rootless, "--image", image,
         "--history.created_by", f"COPY --from=build {spec['rootfs'][1].rstrip('/')}/ /", bundle])
    config = ["--config.user", spec["user"]]
    config += [a for e in spec["entrypoint"] for a in ("--config.entrypoint", e)]
    config += [a for c in spec["cmd"] or [] for a in ("--config.cmd", c)]
    config += [a for k, v in spec["labels"].items() for a in ("--config.label", f"{k}={v}")]
    run(["umoci", "config", "--image", image, *config,
         "--history.created_by", "Dockerfile's final stage: LABEL, USER, ENTRYPOINT, CMD"])
    run(["umoci", "gc", "--layout", layout])

    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    if len(index["manifests"]) != 1:
        sys.exit(f"image-oci: expected one manifest in {index_path}, found {len(index['manifests'])}")
    index["manifests"][0].setdefault("annotations", {})["io.containerd.image.name"] = f"{args.repository}:{args.tag}"
    index_path.write_text(json.dumps(index, separators=(",", ":")))
    write_archive(layout, archive)
    shutil.rmtree(work)
    print(f"image-oci: {args.repository}:{args.tag} -> {archive} ({archive.stat().st_size // 1024} KiB), "
          f"manifest {index['manifests'][0]['digest']}")


if __name__ == "__main__":
    main()
