// Command controlplane runs a real Kubernetes cluster for bucketwire's tests, every
// component built from the Kubernetes Go modules into this one binary:
//
//   - serve: etcd (embedded) and kube-apiserver in this process, plus
//     kube-controller-manager (the controllers ordinary Pods and Deployments need) and
//     kube-scheduler as child processes of the same binary;
//   - kubelet and kube-proxy: the node's components, which the test bed starts beside a
//     containerd (tests/testbed/node.py).
//
// serve generates its own CA, serving certificate, client certificates (admin in
// system:masters; the kubelet as system:node:NAME, the scheduler and kube-proxy under
// their bootstrap RBAC identities) and service-account signing key, so that TLS, the Node
// authorizer, RBAC and TokenRequest behave exactly as on a real cluster. When the
// apiserver is ready it writes DIR/kubeconfig (admin), DIR/<component>.kubeconfig and
// then DIR/ready (atomically); SIGTERM or SIGINT shuts everything down.
//
// Usage:
//
//	controlplane serve --dir DIR --service-account-issuer URL [--advertise-address IP]
//	controlplane kubelet [kubelet flags]
//	controlplane kube-proxy [kube-proxy flags]
//	controlplane controller-manager|scheduler [flags]   (internal: children of serve)
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// The controllers kube-controller-manager runs: what namespaces and owner references need
// (namespace, garbage collector), what ordinary Pods need (every namespace's `default`
// ServiceAccount and `kube-root-ca.crt` ConfigMap; a node's not-ready taint removed once it
// is Ready), Deployments (deployment, replicaset), PodDisruptionBudgets (disruption) and
// Services (endpointslice, for kube-proxy).
var controllers = []string{
	"namespace-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
	"root-ca-certificate-publisher-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller",
	"pod-garbage-collector-controller",
	"deployment-controller",
	"replicaset-controller",
	"disruption-controller",
	"endpointslice-controller",
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane serve|controller-manager [flags]")
		os.Exit(2)
	}
	// Each component parses its own flags (os.Args after the subcommand), as its own
	// binary would.
	component := func(run func() int) {
		os.Args = append([]string{os.Args[0] + " " + os.Args[1]}, os.Args[2:]...)
		os.Exit(run())
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane:", err)
			os.Exit(1)
		}
	case "controller-manager":
		component(func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) })
	case "scheduler":
		component(func() int { return cli.Run(scheduler.NewSchedulerCommand()) })
	case "kubelet":
		component(func() int { return cli.Run(kubelet.NewKubeletCommand(context.Background())) })
	case "kube-proxy":
		component(func() int { return cli.Run(proxy.NewProxyCommand()) })
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "working directory for certificates, etcd data, logs and the kubeconfig (required)")
	issuer := fs.String("service-account-issuer", "https://kubernetes.default.svc", "issuer (iss) of service-account tokens")
	port := fs.Int("port", 0, "apiserver secure port (0 picks a free one)")
	advertise := fs.String("advertise-address", "127.0.0.1", "the apiserver's address for Pods (the `kubernetes` Service's endpoint); other than loopback, the apiserver also listens on it")
	nodeName := fs.String("node-name", "", "the node whose kubelet gets a client certificate (default: this host's name, as the kubelet names its node)")
	withControllers := fs.Bool("controller-manager", true, "also run kube-controller-manager and kube-scheduler")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	root, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(root, "pki")
	etcdDir := filepath.Join(root, "etcd")
	// Every start is a fresh cluster: old state would make tests depend on each other.
	for _, d := range []string{pkiDir, etcdDir, filepath.Join(root, "ready")} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return err
	}

	apiPort := *port
	if apiPort == 0 {
		if apiPort, err = freePort(); err != nil {
			return err
		}
	}
	etcdClientPort, err := freePort()
	if err != nil {
		return err
	}
	etcdPeerPort, err := freePort()
	if err != nil {
		return err
	}

	advertiseIP := net.ParseIP(*advertise)
	if advertiseIP == nil {
		return fmt.Errorf("--advertise-address %q is not an IP address", *advertise)
	}
	if *nodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			return err
		}
		*nodeName = strings.ToLower(host)
	}
	pki, err := generatePKI(pkiDir, *nodeName, []net.IP{advertiseIP})
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}

	etcd, err := startEtcd(etcdDir, etcdClientPort, etcdPeerPort)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	// On loopback only, unless Pods on the node must reach it: then it also listens on the
	// advertised address and keeps the `kubernetes` Service's endpoint there (what
	// kube-proxy routes 10.96.0.1:443 to).
	bindAddress, endpointReconciler := "127.0.0.1", "none"
	if !advertiseIP.IsLoopback() {
		bindAddress, endpointReconciler = "0.0.0.0", "lease"
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	apiArgs := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort),
		"--bind-address=" + bindAddress,
		"--advertise-address=" + advertiseIP.String(),
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--client-ca-file=" + pki.caCert,
		"--service-account-issuer=" + *issuer,
		"--service-account-key-file=" + pki.saPublicKey,
		"--service-account-signing-key-file=" + pki.saPrivateKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=" + endpointReconciler,
		"--kubelet-client-certificate=" + pki.clients["apiserver-kubelet-client"].cert,
		"--kubelet-client-key=" + pki.clients["apiserver-kubelet-client"].key,
		// MutatingAdmissionPolicy (beta, off by default in 1.35): the test bed's stand-in for
		// EKS's pod identity webhook is one (tests/testbed/eks-pod-identity-webhook.yaml).
		"--feature-gates=MutatingAdmissionPolicy=true",
		"--runtime-config=admissionregistration.k8s.io/v1beta1=true",
		// On SIGTERM, stop listening once in-flight requests are done instead of waiting up to
		// the request timeout (60 s) for every client's watch connection to go idle.
		"--shutdown-send-retry-after=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	apiCmd := apiserver.NewAPIServerCommand()
	apiCmd.SetArgs(apiArgs)
	// The apiserver command installs the SIGTERM/SIGINT handler and cancels its
	// context on the first signal; Execute returns once it has shut down.
	apiDone := make(chan error, 1)
	go func() { apiDone <- apiCmd.Execute() }()
	// The children are told first: their watches would otherwise hold the apiserver's
	// graceful shutdown open.
	var children childProcesses
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		children.signal(syscall.SIGTERM)
	}()

	if err := waitReady(server, pki, apiDone, 3*time.Minute); err != nil {
		return err
	}
	kubeconfig := filepath.Join(root, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, pki); err != nil {
		return err
	}

	for name, client := range pki.clients {
		if name == "apiserver-kubelet-client" {
			continue
		}
		if err := writeClientKubeconfig(filepath.Join(root, name+".kubeconfig"), server, pki.caCert, client); err != nil {
			return err
		}
	}

	if *withControllers {
		kcm, err := startChild(root, "controller-manager",
			"--kubeconfig="+kubeconfig,
			"--controllers="+strings.Join(controllers, ","),
			"--root-ca-file="+pki.caCert,
			"--leader-elect=false",
			"--secure-port=0",
			"--use-service-account-credentials=false",
			"--v=0",
		)
		if err != nil {
			return err
		}
		children.add(kcm)
		sched, err := startChild(root, "scheduler",
			"--kubeconfig="+filepath.Join(root, "kube-scheduler.kubeconfig"),
			"--authentication-kubeconfig="+filepath.Join(root, "kube-scheduler.kubeconfig"),
			"--authorization-kubeconfig="+filepath.Join(root, "kube-scheduler.kubeconfig"),
			"--leader-elect=false",
			"--secure-port=0",
			"--v=0",
		)
		if err != nil {
			return err
		}
		children.add(sched)
	}

	readyFile := filepath.Join(root, "ready")
	if err := writeFileAtomic(readyFile, []byte(fmt.Sprintf("server=%s\nkubeconfig=%s\n", server, kubeconfig))); err != nil {
		return err
	}
	fmt.Printf("controlplane ready: %s (kubeconfig %s)\n", server, kubeconfig)

	apiErr := <-apiDone
	children.signal(syscall.SIGTERM)
	for _, c := range children.list() {
		waitOrKill(c, 10*time.Second)
	}
	_ = os.Remove(readyFile)
	return apiErr
}

// startEtcd runs a single-member etcd on loopback. fsync is off: this is a
// throwaway test store and fsync dominates its latency on shared disks.
func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "controlplane"
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd did not become ready within 60s")
	}
}

// childProcesses are serve's children, signalled from the signal handler's goroutine.
type childProcesses struct {
	mu    sync.Mutex
	procs []*exec.Cmd
}

func (c *childProcesses) add(cmd *exec.Cmd) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, cmd)
}

func (c *childProcesses) list() []*exec.Cmd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*exec.Cmd(nil), c.procs...)
}

func (c *childProcesses) signal(sig os.Signal) {
	for _, cmd := range c.list() {
		_ = cmd.Process.Signal(sig)
	}
}

// startChild runs a component (this binary's subcommand) as a child of this process
// (its global state, flags and signal handling are its own), logging to DIR/NAME.log.
// Pdeathsig makes sure it never outlives us, even after kill -9.
func startChild(root, name string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(root, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return cmd, nil
}

func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// waitReady polls /readyz as the admin user until the apiserver answers 200.
func waitReady(server string, pki *pkiFiles, apiDone <-chan error, timeout time.Duration) error {
	cert, err := tls.LoadX509KeyPair(pki.adminCert, pki.adminKey)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case err := <-apiDone:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s", timeout)
		case <-time.After(250 * time.Millisecond):
		}
		resp, err := client.Get(server + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
