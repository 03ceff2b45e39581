"""The test bed's node: a real kubelet and kube-proxy (built from the Kubernetes Go modules into
the control plane's binary: `controlplane kubelet`, `controlplane kube-proxy`), Debian's
containerd and runc, and a CNI bridge, joined to the test bed's control plane.

Facts this relies on (../shared/notes/node.md has the probe):
- containerd needs `restrict_oom_score_adj = true`: the machine lacks CAP_SYS_RESOURCE, so runc
  cannot lower a container's oom_score_adj as the CRI asks for sandboxes.
- kubelet 1.35 refuses cgroup v1 unless `failCgroupV1: false`; this machine has v1 (hybrid).
- No registry is reachable: images are OCI archives built locally (tests/testbed/images.py,
  `make image`) and imported into containerd's `k8s.io` namespace.
- The node's name is this host's name (it resolves to 127.0.0.1), so the apiserver reaches the
  kubelet for logs and exec; the kubelet's client identity is system:node:<name> (the Node
  authorizer), the apiserver's towards the kubelet a certificate the kubelet's x509 client CA
  trusts, and the kubelet authorizes it with SubjectAccessReviews (Webhook), as on EKS.

Networking: Pods are on the bridge `bwtestbed0` (10.244.0.0/24, gateway 10.244.0.1 on this host).
The apiserver and moto also listen on the gateway address, and kube-proxy (iptables mode) routes
the `kubernetes` Service (10.96.0.1:443) to the apiserver, so a Pod's in-cluster configuration
works unchanged. No DNS (no CoreDNS): Pods use addresses.

Host-global state the node creates, all removed by `stop` (and only ours): the bridge, the
cgroup subtree `bucketwire-testbed` in every v1 hierarchy, kube-proxy's iptables chains, mounts
under the node's directory, the Pods' network namespaces created since start, /var/log/containers
links into the node's directory, and /var/lib/kubelet, /run/containerd, /var/lib/cni, /run/netns
and /var/log/containers themselves when they did not exist before.
One node per machine: two test beds on one machine would share those paths.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

BRIDGE = "bwtestbed0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
CLUSTER_CIDR = POD_CIDR
CGROUP_ROOT = "bucketwire-testbed"
CNI_NETWORK = "bucketwire-testbed"
CNI_BIN_DIR = "/usr/lib/cni"
# Debian bookworm's packages, by name (`make testbed` installs them when missing).
APT_PACKAGES = ["containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "umoci"]
# Host paths the kubelet, containerd and CNI write outside their configured directories; each
# is removed at stop only if it did not exist before start (recorded in node/host-paths.json).
HOST_PATHS = ["/var/lib/kubelet", "/var/log/containers", "/run/containerd", "/var/lib/cni", "/run/netns"]
PAUSE_IMAGE = "registry.k8s.io/pause:bucketwire-testbed"
# One node per machine (host paths, the bridge and the cgroup root are shared): the test bed that
# runs it records its state directory here, and another test bed starts without a node.
MACHINE_LOCK = Path("/run/bucketwire-testbed-node")


def unavailable_reason(state: Path):
    """Why this machine cannot run the node for the test bed in `state`, or None."""
    if os.geteuid() != 0:
        return "the node needs root (containerd, runc, cgroups, a bridge)"
    owner = lock_owner()
    if owner is not None and owner != str(state):
        return f"another test bed ({owner}) runs this machine's node; one node per machine"
    for tool in ["containerd", "ctr", "runc", "iptables", "conntrack", "ip"]:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make testbed` installs {' '.join(APT_PACKAGES)})"
    if not Path(CNI_BIN_DIR, "bridge").exists():
        return f"the CNI plugins are not installed in {CNI_BIN_DIR} (containernetworking-plugins)"
    return None


def lock_owner():
    """The state directory of the test bed whose node runs on this machine, if its containerd
    still runs."""
    try:
        owner, pid_text = MACHINE_LOCK.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return owner if Path(f"/proc/{pid_text}").exists() else None


class Node:
    def __init__(self, state: Path, controlplane_bin: Path, controlplane_dir: Path, log):
        self.state = state
        self.dir = state / "node"
        self.bin = controlplane_bin
        self.cp_dir = controlplane_dir
        self.log = log
        self.socket = self.dir / "containerd" / "containerd.sock"

    # --- before the control plane: the bridge its apiserver listens on ---------------------

    def prepare_network(self):
        """The bridge, with the gateway address the apiserver and moto listen on for Pods. The
        CNI bridge plugin finds it and adds the Pods' veths to it. Takes the machine's node
        lock (with this process's pid until containerd's replaces it)."""
        MACHINE_LOCK.write_text(f"{self.state} {os.getpid()}\n")
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
            run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        addrs = subprocess.run(["ip", "-o", "addr", "show", BRIDGE], capture_output=True, text=True).stdout
        if f"{GATEWAY}/" not in addrs:
            run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])

    # --- after the control plane --------------------------------------------------------------

    def start(self, node_name, spawn, wait_for, images):
        """containerd, the images, the kubelet and kube-proxy, until the node is Ready and
        untainted (the node-lifecycle controller removes the not-ready taint)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        existed = {p: Path(p).exists() for p in HOST_PATHS}
        netns = Path("/run/netns")
        before = {"paths": existed, "netns": sorted(n.name for n in netns.iterdir()) if netns.exists() else []}
        (self.dir / "host-paths.json").write_text(json.dumps(before))
        for ctrl in cgroup_hierarchies():
            (ctrl / CGROUP_ROOT).mkdir(exist_ok=True)
        self.write_configs()

        containerd = spawn("containerd", ["containerd", "--config", str(self.dir / "containerd.toml")], "containerd.log")
        MACHINE_LOCK.write_text(f"{self.state} {containerd.pid}\n")
        wait_for("containerd", lambda: self.ctr("version", check=False).returncode == 0, containerd, 30, "containerd.log")
        for archive in images:
            self.import_image(archive)

        kubelet = spawn("kubelet", [
            str(self.bin), "kubelet",
            f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={self.cp_dir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet-pki'}",
            f"--node-ip={GATEWAY}",
            "--v=1",
        ], "kubelet.log")
        proxy = spawn("kube-proxy", [
            str(self.bin), "kube-proxy",
            f"--kubeconfig={self.cp_dir / 'kube-proxy.kubeconfig'}",
            f"--hostname-override={node_name}",
            f"--cluster-cidr={CLUSTER_CIDR}",
            "--proxy-mode=iptables",
            # No conntrack table tuning: the test bed must not change the host's sysctls.
            "--conntrack-max-per-core=0",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--healthz-bind-address=127.0.0.1:{free_port()}",
            "--v=1",
        ], "kube-proxy.log")
        api = ApiClient(self.cp_dir)
        wait_for("the node", lambda: api.node_ready(node_name), kubelet, 120, "kubelet.log")
        wait_for("kube-proxy", lambda: self.service_rules_present(), proxy, 60, "kube-proxy.log")

    def write_configs(self):
        d = self.dir
        for sub in ["containerd/root", "containerd/state", "cni/net.d", "cni/ipam", "kubelet", "pod-logs",
                    "volume-plugins"]:
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "containerd.toml").write_text(f"""version = 2
root = "{d / 'containerd/root'}"
state = "{d / 'containerd/state'}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_cdi = false
  # This machine lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (node.md).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{d / 'cni/net.d'}"
""")
        (d / "cni/net.d/10-bucketwire-testbed.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                 # The default route through the gateway: Services' cluster IPs (kube-proxy's
                 # DNAT on this host) are outside the Pod subnet.
                 "ipam": {"type": "host-local", "dataDir": str(d / "cni/ipam"),
                          "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "loopback"},
            ],
        }, indent=2))
        ca = self.cp_dir / "pki" / "ca.crt"
        (d / "kubelet.yaml").write_text(f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
failSwapOn: false
# kubelet 1.35 refuses cgroup v1 otherwise; this machine has v1 (node.md).
failCgroupV1: false
containerRuntimeEndpoint: unix://{self.socket}
address: 127.0.0.1
port: {free_port()}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {free_port()}
# The apiserver's client certificate (logs, exec) is signed by the test bed's CA; every other
# caller is refused, and what a caller may do is decided by the apiserver (SubjectAccessReview).
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
podLogsDir: {d / 'pod-logs'}
volumePluginDir: {d / 'volume-plugins'}
resolvConf: /etc/resolv.conf
rotateCertificates: false
serializeImagePulls: false
# A handful of Pods at most: no eviction and no image garbage collection for the machine's disk
# or memory figures (a shared CI machine's disk is often more than 85% full).
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
""")

    def ctr(self, *args, check=True):
        return subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, check=check)

    def import_image(self, archive):
        result = self.ctr("images", "import", "--all-platforms", str(archive), check=False)
        if result.returncode != 0:
            raise SystemExit(f"testbed: importing {archive} into containerd failed: {result.stderr.strip()}")
        self.log(f"imported {Path(archive).name}: {' '.join(result.stdout.split())}")

    def service_rules_present(self):
        out = subprocess.run(["iptables", "-t", "nat", "-S", "KUBE-SERVICES"], capture_output=True, text=True)
        return out.returncode == 0 and "default/kubernetes:https" in out.stdout

    # --- stop -------------------------------------------------------------------------------

    def stop_containers(self):
        """Every container and sandbox containerd runs for the kubelet, and their shims (which
        containerd starts in sessions of their own, outside the test bed's process groups)."""
        if not self.socket.exists():
            return
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 20
        for task in tasks:
            while time.monotonic() < deadline and self.ctr("tasks", "delete", task, check=False).returncode != 0:
                time.sleep(0.2)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def cleanup(self):
        """After the processes are gone: what they left on the host, ours only (nothing when
        another test bed holds the machine's node). Returns what is still there (empty when
        the host is as it was)."""
        try:
            owner = MACHINE_LOCK.read_text().split()[0]
        except (FileNotFoundError, IndexError):
            owner = None
        if owner != str(self.state):
            return []
        for pid in shim_pids(self.socket):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # kube-proxy's own cleanup of its iptables chains, then the kubelet's (it has none).
        subprocess.run([str(self.bin), "kube-proxy", "--cleanup", "--v=0"], capture_output=True)
        remove_kubelet_chains()
        before_path = self.dir / "host-paths.json"
        before = json.loads(before_path.read_text()) if before_path.exists() else {"paths": {}, "netns": []}
        existed = before["paths"]
        # Only our containers' mounts (under the node's directory) and the Pods' network
        # namespaces created since start; another containerd's or CNI user's are left alone.
        netns = Path("/run/netns")
        ours = [n for n in netns.glob("cni-*") if n.name not in before["netns"]] if netns.exists() else []
        unmount_under([self.dir, *ours])
        for ns in ours:
            subprocess.run(["ip", "netns", "delete", ns.name], capture_output=True)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        for ctrl in cgroup_hierarchies():
            remove_cgroup_tree(ctrl / CGROUP_ROOT)
        logs = Path("/var/log/containers")
        if logs.exists():
            for link in logs.iterdir():
                if link.is_symlink() and str(os.readlink(link)).startswith(str(self.dir)):
                    link.unlink()
        for path, was_there in existed.items():
            if not was_there and Path(path).exists():
                shutil.rmtree(path, ignore_errors=True)
        # The node's own directory: containerd's content store would otherwise grow by every
        # image archive each start imports.
        shutil.rmtree(self.dir, ignore_errors=True)
        MACHINE_LOCK.unlink(missing_ok=True)
        return self.leftovers()

    def leftovers(self):
        """What the node created that is still on the host."""
        left = []
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
            left.append(f"bridge {BRIDGE}")
        left += [f"cgroup {c / CGROUP_ROOT}" for c in cgroup_hierarchies() if (c / CGROUP_ROOT).exists()]
        for tool in ["iptables", "ip6tables"]:
            if shutil.which(f"{tool}-save"):
                rules = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
                left += [f"{tool} chain {line.split()[0][1:]}" for line in rules.splitlines()
                         if line.startswith(":KUBE-")]
        mounts = Path("/proc/self/mountinfo").read_text()
        left += [f"mount {line.split()[4]}" for line in mounts.splitlines()
                 if line.split()[4].startswith(str(self.dir))]
        left += [f"shim pid {pid}" for pid in shim_pids(self.socket)]
        if self.dir.exists():
            left.append(f"directory {self.dir}")
        return left


class ApiClient:
    """The admin's view of the apiserver, for the few reads the test bed needs."""

    def __init__(self, cp_dir: Path):
        ready = dict(line.split("=", 1) for line in (cp_dir / "ready").read_text().split())
        self.server = ready["server"]
        pki = cp_dir / "pki"
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def get(self, path):
        with urllib.request.urlopen(self.server + path, context=self.context, timeout=5) as resp:
            return json.load(resp)

    def node_ready(self, name):
        try:
            node = self.get(f"/api/v1/nodes/{name}")
        except Exception:
            return False
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        tainted = any(t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints", []))
        return ready and not tainted


def node_name():
    """The kubelet names its node after this host (lowercased); the control plane issues the
    kubelet's certificate for that name."""
    import socket

    return socket.gethostname().lower()


def run(argv):
    subprocess.run(argv, check=True, capture_output=True)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cgroup_hierarchies():
    """The cgroup v1 hierarchies (cpu, memory, ...), each a directory under /sys/fs/cgroup."""
    root = Path("/sys/fs/cgroup")
    return [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "unified"] if root.exists() else []


def remove_cgroup_tree(top: Path):
    if not top.exists():
        return
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in dirs + [top]:
        try:
            d.rmdir()
        except OSError:
            pass


# The iptables chains the kubelet creates (pkg/kubelet/kubelet_network_linux.go), per table.
KUBELET_CHAINS = {"filter": ["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"], "nat": ["KUBE-KUBELET-CANARY"],
                  "mangle": ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"]}


def remove_kubelet_chains():
    for tool in ["iptables", "ip6tables"]:
        if shutil.which(tool) is None:
            continue
        for table, chains in KUBELET_CHAINS.items():
            rules = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            for rule in rules:
                parts = rule.split()
                if parts[:1] == ["-A"] and any(f"-j {c}" in rule for c in chains) and parts[1] not in chains:
                    subprocess.run([tool, "-t", table, "-D", *parts[1:]], capture_output=True)
            for chain in chains:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def unmount_under(roots):
    """Unmount every mount point under the given directories, deepest first."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(r) or point.startswith(str(r) + "/") for r in roots):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def shim_pids(socket: Path):
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in b" ".join(cmdline):
            pids.append(int(entry.name))
    return pids
