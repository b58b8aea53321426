// Package certs bootstraps kubelab's PKI in the server's data directory: a
// cluster CA, the API server's serving certificate, the admin client
// credential, the admin kubeconfig and the node join token. Everything is
// created on first start and reused afterwards, so restarting a server keeps
// every issued credential valid. It also signs node CSRs for the join endpoint.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// Validity periods: long enough that a lab never sees an expiry.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 5 * 365 * 24 * time.Hour
)

// Admin identity written into the kubeconfig.
const (
	AdminUser  = "kubernetes-admin"
	AdminGroup = "system:masters"
)

// PKI holds the loaded credentials of one data directory.
type PKI struct {
	Dir       string // DATA/pki
	CA        *x509.Certificate
	CAKey     crypto.Signer
	CAPEM     []byte
	Serving   tls.Certificate
	Admin     tls.Certificate
	AdminPEM  []byte // admin cert PEM
	AdminKey  []byte // admin key PEM
	NodeToken string
}

// Paths under DATA.
func caCertPath(pki string) string { return filepath.Join(pki, "ca.crt") }

// Ensure loads the PKI of dataDir, creating what is missing. sans are the
// extra IPs or DNS names for the serving certificate beyond the defaults
// (127.0.0.1, ::1, localhost, the host name, the first service IP). If the
// existing serving certificate lacks one of the wanted names it is reissued
// (same CA), so adding a --tls-san on restart works.
func Ensure(dataDir string, sans []string, serviceIP net.IP) (*PKI, error) {
	dir := filepath.Join(dataDir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	p := &PKI{Dir: dir}
	if err := p.ensureCA(); err != nil {
		return nil, err
	}
	ips, dns := servingNames(sans, serviceIP)
	serving, err := p.ensureLeaf("server", "kube-apiserver", nil, ips, dns,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	if err != nil {
		return nil, err
	}
	p.Serving = serving
	admin, err := p.ensureLeaf("admin", AdminUser, []string{AdminGroup}, nil, nil,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	p.Admin = admin
	if p.AdminPEM, err = os.ReadFile(filepath.Join(dir, "admin.crt")); err != nil {
		return nil, err
	}
	if p.AdminKey, err = os.ReadFile(filepath.Join(dir, "admin.key")); err != nil {
		return nil, err
	}
	if p.NodeToken, err = ensureToken(filepath.Join(dataDir, "node-token")); err != nil {
		return nil, err
	}
	return p, nil
}

func servingNames(sans []string, serviceIP net.IP) ([]net.IP, []string) {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if serviceIP != nil {
		ips = append(ips, serviceIP)
	}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	if h, err := os.Hostname(); err == nil && h != "" {
		dns = append(dns, h)
	}
	for _, s := range sans {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, s)
		}
	}
	return ips, dns
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func (p *PKI) ensureCA() error {
	certPath, keyPath := caCertPath(p.Dir), filepath.Join(p.Dir, "ca.key")
	if ok, _ := cert.CanReadCertAndKey(certPath, keyPath); !ok {
		key, err := newKey()
		if err != nil {
			return err
		}
		ca, err := cert.NewSelfSignedCACert(cert.Config{CommonName: "kubelab-ca"}, key)
		if err != nil {
			return fmt.Errorf("create CA: %w", err)
		}
		if err := writeKeyPair(certPath, keyPath, ca.Raw, key); err != nil {
			return err
		}
	}
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	cas, err := cert.ParseCertsPEM(pemBytes)
	if err != nil {
		return fmt.Errorf("parse CA: %w", err)
	}
	keyAny, err := keyutil.PrivateKeyFromFile(keyPath)
	if err != nil {
		return fmt.Errorf("read CA key: %w", err)
	}
	signer, ok := keyAny.(crypto.Signer)
	if !ok {
		return errors.New("CA key is not a signer")
	}
	p.CA, p.CAKey, p.CAPEM = cas[0], signer, pemBytes
	return nil
}

func writeKeyPair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(keyPath, pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: keyDER})); err != nil {
		return fmt.Errorf("write %s: %w", keyPath, err)
	}
	if err := cert.WriteCert(certPath, pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der})); err != nil {
		return fmt.Errorf("write %s: %w", certPath, err)
	}
	return nil
}

// ensureLeaf loads DIR/name.{crt,key} or issues them; a certificate missing
// one of the wanted SANs, or not signed by the current CA, is reissued.
func (p *PKI) ensureLeaf(name, cn string, orgs []string, ips []net.IP, dns []string, usage []x509.ExtKeyUsage) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
	if kp, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(kp.Certificate[0])
		if err == nil && leaf.CheckSignatureFrom(p.CA) == nil && covers(leaf, ips, dns) {
			kp.Leaf = leaf
			return kp, nil
		}
	}
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := p.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		IPAddresses: ips, DNSNames: dns, ExtKeyUsage: usage,
	}, key.Public())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue %s certificate: %w", name, err)
	}
	if err := writeKeyPair(certPath, keyPath, der, key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func covers(c *x509.Certificate, ips []net.IP, dns []string) bool {
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, d := range dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	return true
}

// sign issues a leaf certificate from tmpl (subject, SANs, usages) for pub.
func (p *PKI) sign(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = now.Add(-5 * time.Minute)
	tmpl.NotAfter = now.Add(leafValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	return x509.CreateCertificate(rand.Reader, tmpl, p.CA, pub, p.CAKey)
}

// SignNode checks a PEM CSR and issues the certificate of node nodeName:
// CN=system:node:NAME, O=system:nodes, client and server auth, with the
// CSR's IP and DNS SANs. It returns the certificate as PEM.
func (p *PKI) SignNode(nodeName string, csrPEM []byte) ([]byte, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	der, err := p.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
		IPAddresses: csr.IPAddresses, DNSNames: csr.DNSNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: cert.CertificateBlockType, Bytes: der}), nil
}

// CAPool is a pool holding only the cluster CA.
func (p *PKI) CAPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pool
}

func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node token: %w", err)
	}
	return tok, nil
}

// WriteKubeconfig writes the admin kubeconfig for server (an https URL) to path.
// The credentials are embedded so the file works when copied elsewhere.
func (p *PKI) WriteKubeconfig(path, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubelab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.CAPEM}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: p.AdminPEM, ClientKeyData: p.AdminKey}
	cfg.Contexts["kubelab"] = &clientcmdapi.Context{Cluster: "kubelab", AuthInfo: AdminUser, Namespace: "default"}
	cfg.CurrentContext = "kubelab"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return os.Rename(tmp, path)
}
