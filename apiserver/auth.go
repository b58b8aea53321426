package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// User is an authenticated identity.
type User struct {
	Name   string
	Groups []string
}

type userKey struct{}

// UserFrom returns the request's authenticated user.
func UserFrom(ctx context.Context) (User, bool) {
	if st := stateFrom(ctx); st != nil && st.authed {
		return st.user, true
	}
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

func goArch() string { return runtime.GOARCH }

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// publicPath is served without credentials: health probes, and the join
// endpoint, which checks the node token itself.
func publicPath(p string) bool {
	switch {
	case p == "/healthz" || p == "/livez" || p == "/readyz",
		strings.HasPrefix(p, "/healthz/"), strings.HasPrefix(p, "/livez/"), strings.HasPrefix(p, "/readyz/"),
		p == "/kubelab/v1/join":
		return true
	}
	return false
}

// authenticate accepts client certificates signed by the cluster CA (the
// TLS layer verified the chain; CN is the user, O the groups) and the
// loopback bearer token. Everything else gets a 401 Status. Node
// credentials are then limited (authz.go); other identities may do
// everything.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.userOf(r)
		if !ok {
			if publicPath(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			writeError(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		if _, isNode := nodeName(u); isNode && !apiPath(r.URL.Path) && !publicPath(r.URL.Path) {
			a := attributes{user: u, verb: nonResourceVerb(r.Method), path: r.URL.Path}
			if d := authorizeNodePath(a); !d.allowed {
				writeError(w, d.err)
				return
			}
		}
		if st := stateFrom(r.Context()); st != nil {
			st.user, st.authed = u, true
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

// apiPath: the API proper (discovery and resources), authorised per
// request by the handlers.
func apiPath(p string) bool {
	return p == "/api" || p == "/apis" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/apis/")
}

func (s *Server) userOf(r *http.Request) (User, bool) {
	// Like kube-apiserver's union authenticator: any method that succeeds
	// authenticates the request.
	if tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.loopToken)) == 1 {
			return User{Name: "system:apiserver", Groups: []string{"system:masters", "system:authenticated"}}, true
		}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		return User{Name: c.Subject.CommonName, Groups: append(append([]string{}, c.Subject.Organization...), "system:authenticated")}, true
	}
	return User{}, false
}

// JoinRequest is the node join body (shared contract with nodeagent).
type JoinRequest struct {
	NodeName string `json:"nodeName"`
	CSR      string `json:"csr"`
}

// JoinResponse is the node join answer.
type JoinResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// serveJoin issues a node certificate to a caller holding the node token.
func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethodNotAllowed(r))
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.pki.NodeToken)) != 1 {
		writeError(w, apierrors.NewUnauthorized("Unauthorized"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req JoinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, apierrors.NewBadRequest("join request: "+err.Error()))
		return
	}
	if errs := validateNodeName(req.NodeName); errs != "" {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("join request: nodeName %q: %s", req.NodeName, errs)))
		return
	}
	certPEM, err := s.pki.SignNode(req.NodeName, []byte(req.CSR))
	if err != nil {
		writeError(w, apierrors.NewBadRequest("join request: "+err.Error()))
		return
	}
	writeJSONValue(w, http.StatusOK, mediaJSON, JoinResponse{Certificate: string(certPEM), CA: string(s.pki.CAPEM)})
}
