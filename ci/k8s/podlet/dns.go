package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/miekg/dns"
)

// dnsMain stands in for the coredns image, which the conformance suite uses only
// as a UDP backend (UDPRoute tests send one A query for foo.bar.com and accept
// any answer). Like the Corefile's `whoami` zone it answers with the client's
// address; other names get SERVFAIL (pods have no route off the machine, so
// coredns' `forward` could not work either). Flags such as -conf are accepted
// and ignored.
func dnsMain(args []string) {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	_ = fs.String("conf", "", "ignored (coredns compatibility)")
	port := fs.Int("dns.port", 53, "port")
	_ = fs.Parse(args)
	dns.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && dns.Fqdn(r.Question[0].Name) == "foo.bar.com." {
			var ip net.IP
			switch a := w.RemoteAddr().(type) {
			case *net.UDPAddr:
				ip = a.IP
			case *net.TCPAddr:
				ip = a.IP
			}
			if v4 := ip.To4(); v4 != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: v4})
			}
			m.Authoritative = true
		} else {
			m.Rcode = dns.RcodeServerFailure
		}
		_ = w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, proto := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: fmt.Sprintf(":%d", *port), Net: proto}
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Printf("dns (coredns stand-in) listening on :%d udp+tcp\n", *port)
	fmt.Fprintln(os.Stderr, <-errc)
	os.Exit(1)
}
