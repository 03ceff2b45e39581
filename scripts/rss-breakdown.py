#!/usr/bin/env python3
"""Samples where a running operator's resident memory is, every few seconds, until stopped.

Run it beside `make bench-scale` to see which part of the operator's RSS grows (issue 18):

    scripts/rss-breakdown.py --out bench/rss-breakdown-4000.txt &

Each line is one sample of one `bucketwire run` process, in MiB, from /proc/PID/smaps:
`bin` the executable's mapped pages (a fixed part: the code the run touched), `heap` the main
thread's malloc arena (brk), `anon` anonymous mappings (the other threads' malloc arenas, large
allocations and thread stacks), `other` shared libraries and stacks; `hwm` is VmHWM, the peak so far.
"""

import argparse
import re
import subprocess
import time

MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")


def breakdown(pid: str) -> dict:
    parts = {"bin": 0, "heap": 0, "anon": 0, "other": 0}
    name = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            mapping = MAPPING.match(line)
            if mapping:
                name = mapping[1]
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                if name.endswith("/bucketwire"):
                    parts["bin"] += kib
                elif name == "[heap]":
                    parts["heap"] += kib
                elif not name:
                    parts["anon"] += kib
                else:
                    parts["other"] += kib
    with open(f"/proc/{pid}/status") as status:
        parts["hwm"] = int(re.search(r"VmHWM:\s+(\d+)", status.read())[1])
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    args = parser.parse_args()
    with open(args.out, "a") as out:
        while True:
            pids = subprocess.run(
                ["pgrep", "-f", "release/bucketwire run"], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    p = breakdown(pid)
                except (OSError, TypeError):
                    continue  # the process ended between pgrep and the read
                mib = {k: v // 1024 for k, v in p.items()}
                out.write(
                    f"{time.strftime('%H:%M:%S')} pid={pid} hwm={mib['hwm']} bin={mib['bin']} "
                    f"heap={mib['heap']} anon={mib['anon']} other={mib['other']}\n"
                )
                out.flush()
            time.sleep(args.every)


if __name__ == "__main__":
    main()
