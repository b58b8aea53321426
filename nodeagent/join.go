package nodeagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// credentials are the node's client/serving identity, kept in DataDir/pki.
type credentials struct {
	CertFile, KeyFile, CAFile string
}

func credentialPaths(dataDir string) credentials {
	d := filepath.Join(dataDir, "pki")
	return credentials{CertFile: filepath.Join(d, "node.crt"), KeyFile: filepath.Join(d, "node.key"), CAFile: filepath.Join(d, "ca.crt")}
}

// ensureCredentials reuses a still-valid certificate for this node and IP, or
// joins with the token to obtain one.
func ensureCredentials(ctx context.Context, cfg *Config) (credentials, error) {
	cr := credentialPaths(cfg.DataDir)
	if ok := certUsable(cr, cfg.NodeName, cfg.NodeIP); ok {
		return cr, nil
	}
	if cfg.TokenFile == "" {
		return cr, errors.New("no node credentials in data dir and no token file to join with")
	}
	tok, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return cr, fmt.Errorf("read token: %w", err)
	}
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return cr, fmt.Errorf("read CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cr, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + cfg.NodeName, Organization: []string{"system:nodes"}},
		IPAddresses: []net.IP{cfg.NodeIP},
		DNSNames:    []string{cfg.NodeName},
	}, key)
	if err != nil {
		return cr, err
	}
	certPEM, gotCA, err := join(ctx, cfg.ServerURL, strings.TrimSpace(string(tok)), caPEM, cfg.NodeName,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	if err != nil {
		return cr, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return cr, err
	}
	if err := os.MkdirAll(filepath.Dir(cr.KeyFile), 0o700); err != nil {
		return cr, err
	}
	if len(gotCA) == 0 {
		gotCA = caPEM
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{cr.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}, {cr.CertFile, certPEM}, {cr.CAFile, gotCA}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return cr, err
		}
	}
	return cr, nil
}

// certUsable: present, for this node and IP, and not within a day of expiry.
func certUsable(cr credentials, node string, ip net.IP) bool {
	pair, err := tls.LoadX509KeyPair(cr.CertFile, cr.KeyFile)
	if err != nil {
		return false
	}
	if _, err := os.Stat(cr.CAFile); err != nil {
		return false
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || c.Subject.CommonName != "system:node:"+node || time.Until(c.NotAfter) < 24*time.Hour {
		return false
	}
	for _, a := range c.IPAddresses {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}

type joinRequest struct {
	NodeName string `json:"nodeName"`
	CSR      string `json:"csr"`
}

type joinResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// join trades the token and CSR for a certificate (POST /kubelab/v1/join),
// retrying while the server is not up yet.
func join(ctx context.Context, server, token string, caPEM []byte, node string, csrPEM []byte) (cert, ca []byte, err error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("CA file holds no certificate")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body, _ := json.Marshal(joinRequest{NodeName: node, CSR: string(csrPEM)})
	url := strings.TrimRight(server, "/") + "/kubelab/v1/join"
	delay := 200 * time.Millisecond
	for {
		cert, ca, retry, err := joinOnce(ctx, hc, url, token, body)
		if err == nil {
			return cert, ca, nil
		}
		if !retry {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("join %s: %w (last error: %v)", url, ctx.Err(), err)
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

func joinOnce(ctx context.Context, hc *http.Client, url, token string, body []byte) (cert, ca []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, true, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest:
		return nil, nil, false, fmt.Errorf("join refused: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	default:
		return nil, nil, true, fmt.Errorf("join: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var jr joinResponse
	if err := json.Unmarshal(b, &jr); err != nil {
		return nil, nil, false, fmt.Errorf("join response: %w", err)
	}
	if blk, _ := pem.Decode([]byte(jr.Certificate)); blk == nil {
		return nil, nil, false, errors.New("join response has no certificate")
	}
	return []byte(jr.Certificate), []byte(jr.CA), false, nil
}

// restConfig is a client-go config authenticating as the node.
func restConfig(server string, cr credentials) *rest.Config {
	return &rest.Config{
		Host:            server,
		TLSClientConfig: rest.TLSClientConfig{CertFile: cr.CertFile, KeyFile: cr.KeyFile, CAFile: cr.CAFile},
		UserAgent:       "kubelab-agent",
		QPS:             200, // 100 pods starting at once each post a few statuses
		Burst:           400,
		// Protobuf, as the kubelet speaks: smaller and cheaper to decode
		// than JSON for every watch event and status write.
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"},
	}
}
