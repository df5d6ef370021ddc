// Command echo is the demo backend of Loom's examples: every request is answered with what the
// backend saw, so an example can show which backend a request reached and what Loom changed on
// the way. Standard library only (Go 1.24 or later):
//
//	go run examples/backend/echo.go -listen 127.0.0.1:3000=api -listen 127.0.0.1:3001=api-canary
//
// Each -listen is ADDRESS[=NAME][,tls][,status=CODE]: a socket that answers as backend NAME
// (default: -name). Plain sockets speak HTTP/1.1 and HTTP/2 with prior knowledge (h2c); with
// `tls` they speak TLS (HTTP/1.1 and HTTP/2 by ALPN) with -cert and -key. `status=CODE`
// answers every request with that status (a failing endpoint for the circuit-breaker example).
//
// Every response carries the headers `x-backend: NAME` and `x-powered-by: echo`. An HTTP
// request gets a JSON body, one field a line:
//
//	{
//	  "backend": "api",
//	  "method": "GET",
//	  "path": "/api/items?page=2",
//	  "host": "shop.example.com",
//	  "proto": "HTTP/1.1",
//	  "headers": {
//	    "accept": "*/*",
//	    ...
//	  }
//	}
//
// with "sni" added on TLS sockets. A gRPC request (content-type application/grpc) gets a valid
// gRPC answer instead: status 200, content-type application/grpc, one empty message (every
// field at its default, whatever the method's response type) and the trailer grpc-status: 0.
//
// With -grpc URL it is a client instead: it calls the gRPC method of URL
// (http://host:port/package.Service/Method) with one empty message over HTTP/2 with prior
// knowledge, and prints the answer's status, headers, the size of its body and its trailers
// (what curl 7 does not show), e.g. `grpc-status: 0`.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// listenFlag collects the repeated -listen flags.
type listenFlag []string

func (l *listenFlag) String() string     { return strings.Join(*l, " ") }
func (l *listenFlag) Set(v string) error { *l = append(*l, v); return nil }

// socket is one parsed -listen.
type socket struct {
	addr   string
	name   string
	tls    bool
	status int
}

func parseListen(v, defaultName string) (socket, error) {
	parts := strings.Split(v, ",")
	s := socket{addr: parts[0], name: defaultName, status: http.StatusOK}
	if addr, name, ok := strings.Cut(parts[0], "="); ok {
		s.addr, s.name = addr, name
	}
	for _, opt := range parts[1:] {
		switch {
		case opt == "tls":
			s.tls = true
		case strings.HasPrefix(opt, "status="):
			code, err := strconv.Atoi(strings.TrimPrefix(opt, "status="))
			if err != nil || code < 200 || code > 599 {
				return s, fmt.Errorf("-listen %q: status must be a number from 200 to 599", v)
			}
			s.status = code
		default:
			return s, fmt.Errorf("-listen %q: unknown option %q (tls, status=CODE)", v, opt)
		}
	}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		return s, fmt.Errorf("-listen %q: %v", v, err)
	}
	return s, nil
}

// echo is what an HTTP request gets back.
type echo struct {
	Backend string            `json:"backend"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Proto   string            `json:"proto"`
	SNI     string            `json:"sni,omitempty"`
	Headers map[string]string `json:"headers"`
}

func handler(s socket) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Lowercase, as HTTP/2 writes header names, whatever the protocol: the key is set
		// directly so that net/http does not capitalise it.
		w.Header()["x-backend"] = []string{s.name}
		// A header for header-modification.yaml's response filter to remove.
		w.Header()["x-powered-by"] = []string{"echo"}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			grpc(w, r)
			return
		}
		// Read the body (so that the client can finish sending it); its size is not shown.
		_, _ = io.Copy(io.Discard, r.Body)
		e := echo{
			Backend: s.name,
			Method:  r.Method,
			Path:    r.URL.RequestURI(),
			Host:    r.Host,
			Proto:   r.Proto,
			Headers: map[string]string{},
		}
		if r.TLS != nil {
			e.SNI = r.TLS.ServerName
		}
		names := make([]string, 0, len(r.Header))
		for name := range r.Header {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			e.Headers[strings.ToLower(name)] = strings.Join(r.Header[name], ", ")
		}
		body, err := json.MarshalIndent(e, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(s.status)
		_, _ = w.Write(body)
	})
}

// grpc answers any gRPC call with one empty message and status OK.
func grpc(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	w.WriteHeader(http.StatusOK)
	// A message frame: not compressed, length 0.
	_, _ = w.Write([]byte{0, 0, 0, 0, 0})
	w.Header().Set("Grpc-Status", "0")
	w.Header().Set("Grpc-Message", "")
}

// call is the -grpc client: one call with an empty message, the answer printed.
func call(url, authority string) error {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	if authority != "" {
		req.Host = authority
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Println(resp.Proto, resp.Status)
	printHeaders(resp.Header)
	fmt.Printf("(%d bytes of messages)\n", len(body))
	// Trailers are known once the body has been read.
	printHeaders(resp.Trailer)
	return nil
}

// printHeaders prints one `name: value` line a value, names lowercase and sorted.
func printHeaders(h http.Header) {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range h[name] {
			fmt.Printf("%s: %s\n", strings.ToLower(name), v)
		}
	}
}

func main() {
	var listens listenFlag
	flag.Var(&listens, "listen", "ADDRESS[=NAME][,tls][,status=CODE] to serve (repeatable)")
	name := flag.String("name", "echo", "the backend's name where -listen gives none")
	cert := flag.String("cert", "", "certificate (PEM) for tls sockets")
	key := flag.String("key", "", "private key (PEM) for tls sockets")
	grpcURL := flag.String("grpc", "", "instead of serving, call this gRPC method URL and print the answer")
	authority := flag.String("authority", "", "with -grpc: the authority (Host) to ask for")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: echo -listen ADDRESS[=NAME][,tls][,status=CODE]... [-name NAME] [-cert FILE -key FILE]\n"+
				"       echo -grpc http://HOST:PORT/package.Service/Method [-authority HOST]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("echo: ")
	if *grpcURL != "" {
		if err := call(*grpcURL, *authority); err != nil {
			log.Fatal(err)
		}
		return
	}
	if len(listens) == 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	var sockets []socket
	for _, l := range listens {
		s, err := parseListen(l, *name)
		if err != nil {
			log.Fatal(err)
		}
		sockets = append(sockets, s)
	}
	var certs []tls.Certificate
	for _, s := range sockets {
		if s.tls && certs == nil {
			if *cert == "" || *key == "" {
				log.Fatalf("-listen %s,tls needs -cert and -key", s.addr)
			}
			c, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				log.Fatal(err)
			}
			certs = []tls.Certificate{c}
		}
	}

	// Bind every socket before serving any, so that a port in use fails at once.
	listeners := make([]net.Listener, len(sockets))
	for i, s := range sockets {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			log.Fatal(err)
		}
		listeners[i] = ln
	}
	errs := make(chan error, len(sockets))
	for i, s := range sockets {
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		srv := &http.Server{Handler: handler(s), Protocols: protocols}
		kind := "HTTP/1.1 and h2c"
		if s.tls {
			protocols.SetHTTP2(true)
			srv.TLSConfig = &tls.Config{Certificates: certs}
			kind = "TLS (h2, HTTP/1.1)"
		} else {
			protocols.SetUnencryptedHTTP2(true)
		}
		if s.status != http.StatusOK {
			kind += fmt.Sprintf(", answering %d", s.status)
		}
		log.Printf("%s on %s: %s", s.name, listeners[i].Addr(), kind)
		go func(ln net.Listener, useTLS bool) {
			if useTLS {
				// The server offers h2 and http/1.1 by ALPN.
				errs <- srv.ServeTLS(ln, "", "")
			} else {
				errs <- srv.Serve(ln)
			}
		}(listeners[i], s.tls)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	select {
	case err := <-errs:
		log.Fatal(err)
	case <-stop:
	}
}
