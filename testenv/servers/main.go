// Command servers runs the test environment's loopback servers for one cluster
// (scripts/testenv.sh starts one process per cluster):
//
//   - on -oidc (HTTPS): an OIDC issuer for the API server's structured authentication:
//     GET /.well-known/openid-configuration, GET /keys (JWKS of the RSA key in -signing-key,
//     created on first start) and the test-only POST /token, which takes
//     {"sub": "...", "groups": ["..."], "aud": "kubernetes", "ttl_seconds": 600} (optional
//     "email", "name", "claims": {...}) and answers {"id_token": "<RS256 JWT>", ...}.
//   - on -http (plain HTTP), one mux:
//     /git/...    git smart HTTP (git http-backend as CGI) over the bare repositories of -git-root,
//     read and push allowed, every repository exported (a private one, with a testenv-credentials
//     file, asks for those credentials);
//     /charts/... the files of -charts-root (a Helm chart repository: index.yaml and .tgz files);
//     /api/v3/repos/{owner}/{repo}/pulls and /repos/{owner}/{repo}/pulls: the subset of GitHub's
//     REST API that Argo CD's ApplicationSet pull-request generator calls (list, paginated
//     with a Link header);
//     /_test/...  test-only endpoints that open and close those pull requests
//     (POST /_test/repos/{owner}/{repo}/pulls, DELETE /_test/repos/{owner}/{repo}/pulls/{number},
//     DELETE /_test/repos/{owner}/{repo}/pulls to close all, GET /_test/stats);
//     /healthz.
//
// Every listener must be a loopback address. Standard library only.
package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	httpAddr := flag.String("http", "127.0.0.1:0", "listen address of git, charts and the SCM API (plain HTTP)")
	oidcAddr := flag.String("oidc", "", "listen address of the OIDC issuer (HTTPS); empty: no issuer")
	issuer := flag.String("issuer", "", "issuer URL written into tokens and discovery (default https://<-oidc>)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate of the OIDC listener")
	tlsKey := flag.String("tls-key", "", "PEM key of the OIDC listener")
	signingKey := flag.String("signing-key", "", "PEM RSA key that signs ID tokens (created when absent)")
	gitRoot := flag.String("git-root", "", "directory of bare git repositories served under /git/")
	chartsRoot := flag.String("charts-root", "", "directory served under /charts/ (Helm chart repository)")
	scmState := flag.String("scm-state", "", "JSON file keeping the SCM API's pull requests across restarts (optional)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	for _, a := range []string{*httpAddr, *oidcAddr} {
		if a == "" {
			continue
		}
		if err := requireLoopback(a); err != nil {
			log.Fatal(err)
		}
	}
	if *gitRoot == "" || *chartsRoot == "" {
		log.Fatal("-git-root and -charts-root are required")
	}
	for _, d := range []string{*gitRoot, *chartsRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}

	errc := make(chan error, 2)

	// Plain HTTP: git, charts, SCM API.
	scm, err := newSCM(*scmState)
	if err != nil {
		log.Fatal(err)
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		log.Fatal("git not found on PATH: ", err)
	}
	git := gitHandler(gitBin, *gitRoot)
	mux := http.NewServeMux()
	mux.Handle("/git/", git)
	mux.Handle("/charts/", http.StripPrefix("/charts/", http.FileServer(http.Dir(*chartsRoot))))
	scm.register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("http (git /git/, charts /charts/, SCM API /api/v3/, /_test/) on http://%s", hl.Addr())
	go func() {
		errc <- (&http.Server{Handler: logged("http", mux), ReadHeaderTimeout: 30 * time.Second}).Serve(hl)
	}()

	// HTTPS: the OIDC issuer.
	if *oidcAddr != "" {
		if *tlsCert == "" || *tlsKey == "" || *signingKey == "" {
			log.Fatal("-oidc needs -tls-cert, -tls-key and -signing-key")
		}
		key, err := loadOrCreateKey(*signingKey)
		if err != nil {
			log.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			log.Fatal(err)
		}
		iss := *issuer
		if iss == "" {
			iss = "https://" + *oidcAddr
		}
		iss = strings.TrimRight(iss, "/")
		o := &oidc{issuer: iss, key: key, kid: keyID(&key.PublicKey)}
		ol, err := tls.Listen("tcp", *oidcAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("oidc issuer %s on https://%s (kid %s)", iss, ol.Addr(), o.kid)
		// The same git repositories over HTTPS, for credentials that must not cross in clear text.
		om := o.mux()
		om.Handle("/git/", git)
		go func() {
			errc <- (&http.Server{Handler: logged("oidc", om), ReadHeaderTimeout: 30 * time.Second}).Serve(ol)
		}()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		log.Fatal(err)
	case s := <-sig:
		log.Printf("stopping on %v", s)
	}
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback address", addr)
	}
	return nil
}

// ---------- request log ----------

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func logged(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		log.Printf("%s %s %s %d %s", name, r.Method, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Millisecond))
	})
}

// ---------- git smart HTTP ----------

// privateRepo returns the credentials ("user:password") a repository asks for: those in the
// file testenv-credentials of its bare directory, if it has one (tests make private
// repositories that way); "" for a public one.
func privateRepo(root, path string) string {
	rest := strings.TrimPrefix(path, "/git/")
	i := strings.Index(rest, ".git")
	if i < 0 {
		return ""
	}
	dir := filepath.Join(root, filepath.Clean("/"+rest[:i+len(".git")]))
	b, err := os.ReadFile(filepath.Join(dir, "testenv-credentials"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func gitHandler(gitBin, root string) http.Handler {
	backend := gitBackend(gitBin, root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := privateRepo(root, r.URL.Path); want != "" {
			user, password, ok := r.BasicAuth()
			if !ok || user+":"+password != want {
				w.Header().Set("WWW-Authenticate", `Basic realm="devops-stack-testenv"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	})
}

func gitBackend(gitBin, root string) http.Handler {
	return &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Root: "/git",
		Dir:  root,
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			// Push allowed without authentication (http-backend enables receive-pack for an
			// authenticated REMOTE_USER, or when http.receivepack is true).
			"REMOTE_USER=devops-stack-test",
			"GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
			"GIT_CONFIG_KEY_1=safe.directory", "GIT_CONFIG_VALUE_1=*",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + root,
		},
	}
}

// ---------- OIDC issuer ----------

type oidc struct {
	issuer string
	key    *rsa.PrivateKey
	kid    string
}

func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
			return k, nil
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", path)
		}
		return rk, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, err
	}
	return k, os.Rename(tmp, path)
}

func keyID(pub *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return b64(sum[:12])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

func (o *oidc) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{
			"issuer":                                o.issuer,
			"jwks_uri":                              o.issuer + "/keys",
			"token_endpoint":                        o.issuer + "/token",
			"authorization_endpoint":                o.issuer + "/authorize",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nbf", "email", "email_verified", "groups", "name"},
		})
	})
	m.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		pub := &o.key.PublicKey
		writeJSON(w, 200, map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": o.kid,
			"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	m.HandleFunc("POST /token", o.token)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return m
}

type tokenRequest struct {
	Sub        string         `json:"sub"`
	Groups     []string       `json:"groups"`
	Aud        string         `json:"aud"`
	TTLSeconds int64          `json:"ttl_seconds"`
	Email      string         `json:"email"`
	Name       string         `json:"name"`
	Claims     map[string]any `json:"claims"`
}

// token is test-only: it signs whatever identity it is asked for.
func (o *oidc) token(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, 400, "bad JSON body: "+err.Error())
		return
	}
	if req.Sub == "" {
		httpError(w, 400, "sub is required")
		return
	}
	if req.Aud == "" {
		req.Aud = "kubernetes"
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = 600
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 7*24*3600 {
		httpError(w, 400, "ttl_seconds must be between 1 and 604800")
		return
	}
	if req.Email == "" {
		if strings.Contains(req.Sub, "@") {
			req.Email = req.Sub
		} else {
			req.Email = req.Sub + "@devops-stack.test"
		}
	}
	if req.Groups == nil {
		req.Groups = []string{}
	}
	now := time.Now().Unix()
	claims := map[string]any{}
	for k, v := range req.Claims {
		claims[k] = v
	}
	claims["iss"] = o.issuer
	claims["sub"] = req.Sub
	claims["aud"] = req.Aud
	claims["iat"] = now
	claims["nbf"] = now - 5
	claims["exp"] = now + req.TTLSeconds
	claims["groups"] = req.Groups
	claims["email"] = req.Email
	claims["email_verified"] = true
	if req.Name != "" {
		claims["name"] = req.Name
	}
	tok, err := o.sign(claims)
	if err != nil {
		httpError(w, 500, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"id_token": tok, "token_type": "Bearer", "expires_in": req.TTLSeconds})
}

func (o *oidc) sign(claims map[string]any) (string, error) {
	h, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": o.kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, o.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}

// ---------- GitHub-like pull-request API ----------

type pull struct {
	Number    int       `json:"number"`
	Title     string    `json:"title"`
	Branch    string    `json:"branch"`
	SHA       string    `json:"sha"`
	Base      string    `json:"base"`
	Labels    []string  `json:"labels"`
	Author    string    `json:"author"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type scmAPI struct {
	mu    sync.Mutex
	path  string
	repos map[string]map[int]*pull // "owner/repo" (lower case) -> number -> pull
	lists map[string]int           // list requests per "owner/repo"
}

func newSCM(path string) (*scmAPI, error) {
	s := &scmAPI{path: path, repos: map[string]map[int]*pull{}, lists: map[string]int{}}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	} else if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &s.repos); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for k, m := range s.repos {
		if m == nil {
			s.repos[k] = map[int]*pull{}
		}
	}
	return s, nil
}

func (s *scmAPI) saveLocked() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s.repos, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

func repoKey(r *http.Request) (owner, repo, key string) {
	owner, repo = r.PathValue("owner"), r.PathValue("repo")
	return owner, repo, strings.ToLower(owner + "/" + repo)
}

func (s *scmAPI) register(m *http.ServeMux) {
	m.HandleFunc("GET /api/v3/repos/{owner}/{repo}/pulls", s.list)
	m.HandleFunc("GET /repos/{owner}/{repo}/pulls", s.list)
	m.HandleFunc("GET /api/v3/repos/{owner}/{repo}/pulls/{number}", s.get)
	m.HandleFunc("GET /repos/{owner}/{repo}/pulls/{number}", s.get)
	m.HandleFunc("POST /_test/repos/{owner}/{repo}/pulls", s.open)
	m.HandleFunc("DELETE /_test/repos/{owner}/{repo}/pulls/{number}", s.close)
	m.HandleFunc("DELETE /_test/repos/{owner}/{repo}/pulls", s.closeAll)
	m.HandleFunc("GET /_test/stats", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		total := 0
		for _, n := range s.lists {
			total += n
		}
		writeJSON(w, 200, map[string]any{"pull_list_requests": total, "pull_list_requests_by_repo": s.lists})
	})
}

// github renders a pull request the way GitHub's REST API does (the fields go-github reads).
func (p *pull) github(owner, repo, base string) map[string]any {
	user := map[string]any{"login": p.Author, "id": 1, "type": "User"}
	repoObj := map[string]any{
		"id": 1, "name": repo, "full_name": owner + "/" + repo,
		"owner":     map[string]any{"login": owner, "id": 2, "type": "Organization"},
		"html_url":  base + "/" + owner + "/" + repo,
		"clone_url": base + "/git/" + repo + ".git",
	}
	labels := make([]map[string]any, 0, len(p.Labels))
	for i, l := range p.Labels {
		labels = append(labels, map[string]any{"id": i + 1, "name": l, "color": "ededed", "default": false})
	}
	apiURL := fmt.Sprintf("%s/api/v3/repos/%s/%s/pulls/%d", base, owner, repo, p.Number)
	return map[string]any{
		"id":         100000 + p.Number,
		"node_id":    fmt.Sprintf("PR_%s_%s_%d", owner, repo, p.Number),
		"number":     p.Number,
		"state":      p.State,
		"locked":     false,
		"draft":      false,
		"title":      p.Title,
		"body":       "",
		"url":        apiURL,
		"html_url":   fmt.Sprintf("%s/%s/%s/pull/%d", base, owner, repo, p.Number),
		"user":       user,
		"labels":     labels,
		"created_at": p.CreatedAt.UTC().Format(time.RFC3339),
		"updated_at": p.UpdatedAt.UTC().Format(time.RFC3339),
		"head": map[string]any{
			"label": owner + ":" + p.Branch, "ref": p.Branch, "sha": p.SHA, "user": user, "repo": repoObj,
		},
		"base": map[string]any{
			"label": owner + ":" + p.Base, "ref": p.Base, "sha": "", "user": user, "repo": repoObj,
		},
	}
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *scmAPI) list(w http.ResponseWriter, r *http.Request) {
	owner, repo, key := repoKey(r)
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	if perPage > 100 {
		perPage = 100
	}
	page, _ := strconv.Atoi(q.Get("page"))
	if page <= 0 {
		page = 1
	}
	s.mu.Lock()
	s.lists[key]++
	var all []*pull
	for _, p := range s.repos[key] {
		if state == "all" || p.State == state {
			cp := *p
			all = append(all, &cp)
		}
	}
	s.mu.Unlock()
	// GitHub's default order: newest first.
	sort.Slice(all, func(i, j int) bool { return all[i].Number > all[j].Number })
	last := (len(all) + perPage - 1) / perPage
	if last == 0 {
		last = 1
	}
	lo := (page - 1) * perPage
	hi := lo + perPage
	if lo > len(all) {
		lo = len(all)
	}
	if hi > len(all) {
		hi = len(all)
	}
	base := baseURL(r)
	out := make([]map[string]any, 0, hi-lo)
	for _, p := range all[lo:hi] {
		out = append(out, p.github(owner, repo, base))
	}
	link := func(n int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("page", strconv.Itoa(n))
		v.Set("per_page", strconv.Itoa(perPage))
		u := url.URL{Scheme: "", Path: r.URL.Path, RawQuery: v.Encode()}
		return "<" + base + u.String() + ">"
	}
	var links []string
	if page < last {
		links = append(links, link(page+1)+`; rel="next"`, link(last)+`; rel="last"`)
	}
	if page > 1 {
		links = append(links, link(1)+`; rel="first"`, link(page-1)+`; rel="prev"`)
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, 200, out)
}

func (s *scmAPI) get(w http.ResponseWriter, r *http.Request) {
	owner, repo, key := repoKey(r)
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil {
		httpError(w, 404, "Not Found")
		return
	}
	s.mu.Lock()
	p, ok := s.repos[key][n]
	var cp pull
	if ok {
		cp = *p
	}
	s.mu.Unlock()
	if !ok {
		httpError(w, 404, "Not Found")
		return
	}
	writeJSON(w, 200, cp.github(owner, repo, baseURL(r)))
}

type openRequest struct {
	Number int      `json:"number"`
	Title  string   `json:"title"`
	Branch string   `json:"branch"`
	SHA    string   `json:"sha"`
	Base   string   `json:"base"`
	Labels []string `json:"labels"`
	Author string   `json:"author"`
}

// open opens a pull request, or updates the one with the same number (its head moved, say).
func (s *scmAPI) open(w http.ResponseWriter, r *http.Request) {
	owner, repo, key := repoKey(r)
	var req openRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, 400, "bad JSON body: "+err.Error())
		return
	}
	if req.Branch == "" || req.SHA == "" {
		httpError(w, 400, "branch and sha are required")
		return
	}
	if req.Number < 0 {
		httpError(w, 400, "number must be positive")
		return
	}
	if req.Base == "" {
		req.Base = "main"
	}
	if req.Author == "" {
		req.Author = "devops-stack-test"
	}
	if req.Labels == nil {
		req.Labels = []string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prs := s.repos[key]
	if prs == nil {
		prs = map[int]*pull{}
		s.repos[key] = prs
	}
	if req.Number == 0 {
		for n := range prs {
			if n > req.Number {
				req.Number = n
			}
		}
		req.Number++
	}
	if req.Title == "" {
		req.Title = fmt.Sprintf("Pull request %d (%s)", req.Number, req.Branch)
	}
	now := time.Now()
	created := now
	status := 201
	if old, ok := prs[req.Number]; ok {
		created = old.CreatedAt
		status = 200
	}
	p := &pull{Number: req.Number, Title: req.Title, Branch: req.Branch, SHA: req.SHA, Base: req.Base,
		Labels: req.Labels, Author: req.Author, State: "open", CreatedAt: created, UpdatedAt: now}
	prs[req.Number] = p
	if err := s.saveLocked(); err != nil {
		httpError(w, 500, err.Error())
		return
	}
	writeJSON(w, status, p.github(owner, repo, baseURL(r)))
}

func (s *scmAPI) close(w http.ResponseWriter, r *http.Request) {
	_, _, key := repoKey(r)
	n, err := strconv.Atoi(r.PathValue("number"))
	if err != nil {
		httpError(w, 400, "bad number")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.repos[key][n]
	if !ok || p.State != "open" {
		httpError(w, 404, "no open pull request "+strconv.Itoa(n))
		return
	}
	p.State = "closed"
	p.UpdatedAt = time.Now()
	if err := s.saveLocked(); err != nil {
		httpError(w, 500, err.Error())
		return
	}
	w.WriteHeader(204)
}

func (s *scmAPI) closeAll(w http.ResponseWriter, r *http.Request) {
	_, _, key := repoKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, p := range s.repos[key] {
		if p.State == "open" {
			p.State = "closed"
			p.UpdatedAt = now
		}
	}
	if err := s.saveLocked(); err != nil {
		httpError(w, 500, err.Error())
		return
	}
	w.WriteHeader(204)
}
