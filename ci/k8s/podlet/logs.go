package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// criWriter stores a container's output in the CRI log format the kubelet uses:
// "<RFC3339Nano> <stream> F <line>", so `sinceTime` and `timestamps` can be served.
type criWriter struct {
	mu     sync.Mutex
	f      *os.File
	stream string
	buf    []byte
}

var logFileMu sync.Mutex // one container's stdout and stderr share a file

func newCRIWriter(f *os.File, stream string) *criWriter { return &criWriter{f: f, stream: stream} }

func (w *criWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i], "F")
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 16<<10 {
		w.line(w.buf, "P")
		w.buf = nil
	}
	return len(p), nil
}

func (w *criWriter) line(b []byte, tag string) {
	logFileMu.Lock()
	defer logFileMu.Unlock()
	fmt.Fprintf(w.f, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), w.stream, tag, b)
}

func (w *criWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(w.buf, "F")
		w.buf = nil
	}
}

// serveKubeletAPI serves the part of the kubelet API the API server proxies to:
// GET /containerLogs/{namespace}/{pod}/{container} (kubectl logs, pods/log).
// TLS with a self-signed certificate: the API server does not verify it unless
// --kubelet-certificate-authority is set.
func (p *podlet) serveKubeletAPI(ctx context.Context) error {
	cert, err := selfSigned(p.cfg.nodeName, p.cfg.podCIDR.Addr().String())
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/containerLogs/", p.handleLogs)
	srv := &http.Server{
		Addr:              net.JoinHostPort(p.cfg.podCIDR.Addr().String(), strconv.Itoa(p.cfg.kubeletPort)),
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	err = srv.ListenAndServeTLS("", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (p *podlet) handleLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.Error(w, "want /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	st := p.pods[parts[0]+"/"+parts[1]]
	p.mu.Unlock()
	var path string
	if st != nil {
		st.mu.Lock()
		for _, c := range st.containers {
			if c.spec.Name == parts[2] {
				path = c.logPath
			}
		}
		st.mu.Unlock()
	}
	if path == "" {
		http.Error(w, fmt.Sprintf("container %q of pod %s/%s not found on this node", parts[2], parts[0], parts[1]), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("sinceTime"); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			since = t
		}
	}
	if v, err := strconv.Atoi(q.Get("sinceSeconds")); err == nil && v > 0 {
		since = time.Now().Add(-time.Duration(v) * time.Second)
	}
	timestamps := q.Get("timestamps") == "true"
	follow := q.Get("follow") == "true"
	tail := -1
	if v, err := strconv.Atoi(q.Get("tailLines")); err == nil && v >= 0 {
		tail = v
	}
	limit := int64(-1)
	if v, err := strconv.ParseInt(q.Get("limitBytes"), 10, 64); err == nil && v > 0 {
		limit = v
	}

	f, err := os.Open(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	var written int64
	emit := func(line string) bool {
		// "<ts> <stream> <tag> <msg>"
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			return true
		}
		if !since.IsZero() {
			if t, err := time.Parse(time.RFC3339Nano, f[0]); err == nil && t.Before(since) {
				return true
			}
		}
		out := f[3]
		if f[2] == "F" {
			out += "\n"
		}
		if timestamps {
			out = f[0] + " " + out
		}
		if limit >= 0 && written+int64(len(out)) > limit {
			out = out[:limit-written]
		}
		n, err := io.WriteString(w, out)
		written += int64(n)
		return err == nil && (limit < 0 || written < limit)
	}
	rd := bufio.NewReader(f)
	var lines []string
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break // a partial last line is read again when following
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	if tail >= 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	for _, l := range lines {
		if !emit(l) {
			return
		}
	}
	if !follow {
		return
	}
	fl, _ := w.(http.Flusher)
	var partial string
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		for {
			line, err := rd.ReadString('\n')
			partial += line
			if err != nil {
				break
			}
			if !emit(strings.TrimSuffix(partial, "\n")) {
				return
			}
			partial = ""
		}
	}
}

func selfSigned(names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	klog.V(2).Info("kubelet API: self-signed certificate generated")
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
