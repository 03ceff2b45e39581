package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

type pkiFiles struct {
	caCert, caKey             string
	servingCert, servingKey   string
	adminCert, adminKey       string
	saPrivateKey, saPublicKey string
	// Client identities of the other components, as kubeadm issues them, so that the Node
	// authorizer and the bootstrap RBAC roles decide what each may do: name -> cert/key.
	clients map[string]clientFiles
}

type clientFiles struct{ cert, key string }

// The components' client identities (CN, groups). The kubelet's follows the node name.
func componentIdentities(nodeName string) map[string]pkix.Name {
	return map[string]pkix.Name{
		"kubelet":        {CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		"kube-scheduler": {CommonName: "system:kube-scheduler"},
		"kube-proxy":     {CommonName: "system:kube-proxy"},
		// The apiserver's identity towards kubelets (logs, exec), as kubeadm's
		// apiserver-kubelet-client.
		"apiserver-kubelet-client": {CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
	}
}

// generatePKI writes a throwaway CA, a serving certificate for 127.0.0.1/localhost (and
// extraIPs), an admin client certificate (group system:masters), the other components'
// client certificates and an RSA service-account signing key (RS256, as EKS uses).
func generatePKI(dir, nodeName string, extraIPs []net.IP) (*pkiFiles, error) {
	p := &pkiFiles{
		caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		servingCert: filepath.Join(dir, "apiserver.crt"), servingKey: filepath.Join(dir, "apiserver.key"),
		adminCert: filepath.Join(dir, "admin.crt"), adminKey: filepath.Join(dir, "admin.key"),
		saPrivateKey: filepath.Join(dir, "sa.key"), saPublicKey: filepath.Join(dir, "sa.pub"),
	}
	now := time.Now().Add(-time.Hour)
	notAfter := now.Add(10 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "bucketwire-testbed-ca"},
		NotBefore:             now,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if err := writeCert(p.caCert, caDER); err != nil {
		return nil, err
	}
	if err := writeKey(p.caKey, caKey); err != nil {
		return nil, err
	}

	serving := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  append([]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.96.0.1")}, extraIPs...),
	}
	if err := issue(serving, ca, caKey, p.servingCert, p.servingKey); err != nil {
		return nil, err
	}

	admin := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "bucketwire-testbed-admin", Organization: []string{"system:masters"}},
		NotBefore:    now,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(admin, ca, caKey, p.adminCert, p.adminKey); err != nil {
		return nil, err
	}
	p.clients = map[string]clientFiles{}
	for name, subject := range componentIdentities(nodeName) {
		files := clientFiles{cert: filepath.Join(dir, name+".crt"), key: filepath.Join(dir, name+".key")}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      subject,
			NotBefore:    now,
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := issue(tmpl, ca, caKey, files.cert, files.key); err != nil {
			return nil, err
		}
		p.clients[name] = files
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writeKey(p.saPrivateKey, saKey); err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.saPublicKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

func issue(tmpl, ca *x509.Certificate, caKey crypto.Signer, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeCert(certPath, der); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

func writeCert(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

func writeKey(path string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeKubeconfig embeds the CA and the admin client certificate, so the file
// stands alone.
func writeKubeconfig(path, server string, p *pkiFiles) error {
	return writeClientKubeconfig(path, server, p.caCert, clientFiles{cert: p.adminCert, key: p.adminKey})
}

// writeClientKubeconfig writes a stand-alone kubeconfig for one client certificate.
func writeClientKubeconfig(path, server, caCert string, client clientFiles) error {
	read := func(f string) (string, error) {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	ca, err := read(caCert)
	if err != nil {
		return err
	}
	cert, err := read(client.cert)
	if err != nil {
		return err
	}
	key, err := read(client.key)
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: testbed
  context:
    cluster: testbed
    user: admin
current-context: testbed
`, server, ca, cert, key)
	return writeFileAtomic(path, []byte(config))
}
