package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestEnsureCreatesAndReuses(t *testing.T) {
	dir := t.TempDir()
	p, err := Ensure(dir, []string{"10.200.0.254", "lab.example"}, net.ParseIP("10.96.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Serving.Leaf
	if s == nil {
		s, _ = x509.ParseCertificate(p.Serving.Certificate[0])
	}
	for _, ip := range []string{"127.0.0.1", "::1", "10.96.0.1", "10.200.0.254"} {
		found := false
		for _, got := range s.IPAddresses {
			found = found || got.Equal(net.ParseIP(ip))
		}
		if !found {
			t.Errorf("serving cert lacks IP SAN %s: %v", ip, s.IPAddresses)
		}
	}
	if h, _ := os.Hostname(); h != "" {
		if err := s.VerifyHostname(h); err != nil {
			t.Errorf("serving cert lacks host name: %v", err)
		}
	}
	if err := s.VerifyHostname("lab.example"); err != nil {
		t.Error(err)
	}
	if _, err := s.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving cert does not chain to CA: %v", err)
	}
	admin, _ := x509.ParseCertificate(p.Admin.Certificate[0])
	if admin.Subject.CommonName != AdminUser || admin.Subject.Organization[0] != AdminGroup {
		t.Errorf("admin subject %v", admin.Subject)
	}
	st, err := os.Stat(filepath.Join(dir, "node-token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node-token: %v %v", st, err)
	}
	// Restart: everything reused.
	p2, err := Ensure(dir, []string{"10.200.0.254", "lab.example"}, net.ParseIP("10.96.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := x509.ParseCertificate(p2.Serving.Certificate[0])
	if s2.SerialNumber.Cmp(s.SerialNumber) != 0 || p2.NodeToken != p.NodeToken || string(p2.CAPEM) != string(p.CAPEM) {
		t.Fatal("restart did not reuse the PKI")
	}
	// A new SAN reissues the serving certificate from the same CA.
	p3, err := Ensure(dir, []string{"10.1.2.3"}, net.ParseIP("10.96.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	s3, _ := x509.ParseCertificate(p3.Serving.Certificate[0])
	if s3.SerialNumber.Cmp(s.SerialNumber) == 0 || string(p3.CAPEM) != string(p.CAPEM) {
		t.Fatal("new SAN did not reissue from the same CA")
	}
	if err := p.WriteKubeconfig(filepath.Join(dir, "kubeconfig"), "https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil || cfg.Host != "https://127.0.0.1:6443" || len(cfg.CAData) == 0 || len(cfg.CertData) == 0 {
		t.Fatalf("kubeconfig: %v %+v", err, cfg)
	}
}

func TestSignNode(t *testing.T) {
	p, err := Ensure(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"node-1"}, IPAddresses: []net.IP{net.ParseIP("10.200.0.1")}}, key)
	out, err := p.SignNode("node-1", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(out)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "system:node:node-1" || c.Subject.Organization[0] != "system:nodes" || c.DNSNames[0] != "node-1" || !c.IPAddresses[0].Equal(net.ParseIP("10.200.0.1")) {
		t.Fatalf("node cert %+v", c.Subject)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SignNode("node-1", []byte("garbage")); err == nil {
		t.Fatal("garbage CSR accepted")
	}
}
