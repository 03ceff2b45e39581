// Command controlplane runs a real Kubernetes control plane for bucketwire's tests:
// etcd (embedded) and kube-apiserver in this process, plus kube-controller-manager
// (garbage collector and namespace controllers only) as a child process of the same
// binary, all on loopback.
//
// It generates its own CA, serving certificate, admin client certificate and
// service-account signing key, so that TLS, RBAC and TokenRequest behave exactly as
// on a real cluster. When the apiserver is ready it writes DIR/kubeconfig and then
// DIR/ready (atomically); SIGTERM or SIGINT shuts everything down.
//
// Usage:
//
//	controlplane serve --dir DIR --service-account-issuer URL
//	controlplane controller-manager [kube-controller-manager flags]   (internal)
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
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: controlplane serve|controller-manager [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane:", err)
			os.Exit(1)
		}
	case "controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(os.Args[2:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "controlplane: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "working directory for certificates, etcd data, logs and the kubeconfig (required)")
	issuer := fs.String("service-account-issuer", "https://kubernetes.default.svc", "issuer (iss) of service-account tokens")
	port := fs.Int("port", 0, "apiserver secure port on 127.0.0.1 (0 picks a free one)")
	withControllers := fs.Bool("controller-manager", true, "also run kube-controller-manager (garbage collector, namespace controller)")
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

	pki, err := generatePKI(pkiDir)
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}

	etcd, err := startEtcd(etcdDir, etcdClientPort, etcdPeerPort)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	apiArgs := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servingKey,
		"--client-ca-file=" + pki.caCert,
		"--service-account-issuer=" + *issuer,
		"--service-account-key-file=" + pki.saPublicKey,
		"--service-account-signing-key-file=" + pki.saPrivateKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
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

	if err := waitReady(server, pki, apiDone, 3*time.Minute); err != nil {
		return err
	}
	kubeconfig := filepath.Join(root, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, pki); err != nil {
		return err
	}

	var kcm *exec.Cmd
	if *withControllers {
		kcm, err = startControllerManager(root, kubeconfig)
		if err != nil {
			return err
		}
	}

	readyFile := filepath.Join(root, "ready")
	if err := writeFileAtomic(readyFile, []byte(fmt.Sprintf("server=%s\nkubeconfig=%s\n", server, kubeconfig))); err != nil {
		return err
	}
	fmt.Printf("controlplane ready: %s (kubeconfig %s)\n", server, kubeconfig)

	apiErr := <-apiDone
	if kcm != nil && kcm.Process != nil {
		_ = kcm.Process.Signal(syscall.SIGTERM)
		waitOrKill(kcm, 10*time.Second)
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

// startControllerManager runs kube-controller-manager as a child of this process
// (its global state, flags and signal handling are its own). Pdeathsig makes sure
// it never outlives us, even after kill -9.
func startControllerManager(root, kubeconfig string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(root, "controller-manager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "controller-manager",
		"--kubeconfig="+kubeconfig,
		"--controllers=garbage-collector-controller,namespace-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--v=0",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
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
