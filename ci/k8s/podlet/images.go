package main

import (
	"path/filepath"
	"strconv"
	"strings"
)

// image is what a container image runs as on this fake node.
type image struct {
	bin   string
	args  []string // prepended to the container's args
	probe func(env map[string]string) probeTarget
}

// imageMap maps an image repository (the reference without tag or digest) to a local binary.
type imageMap map[string]image

// defaultImages covers every image the Gateway API conformance suite (v1.6.x) uses:
// echo-basic (HTTP, h2c, HTTPS, gRPC, TCP and UDP modes, chosen by env) is built from
// the suite's own module; coredns, used only as a UDP backend, is replaced by the
// podlet's small DNS server.
func defaultImages(binDir string) imageMap {
	echo := image{bin: filepath.Join(binDir, "echo-basic"), probe: echoProbe}
	return imageMap{
		"registry.k8s.io/gateway-api/echo-basic":    echo,
		"gcr.io/k8s-staging-gateway-api/echo-basic": echo,
		"registry.k8s.io/coredns/coredns":           {bin: filepath.Join(binDir, "podlet"), args: []string{"dns"}},
	}
}

func (m imageMap) lookup(ref string) (image, bool) {
	repo := ref
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	img, ok := m[repo]
	return img, ok
}

// echoProbe: the port echo-basic listens on first in each of its modes.
func echoProbe(env map[string]string) probeTarget {
	port := func(name string, def int) int {
		if v, err := strconv.Atoi(env[name]); err == nil {
			return v
		}
		return def
	}
	switch {
	case env["GRPC_ECHO_SERVER"] != "":
		return probeTarget{port: port("HTTP_PORT", 3000)}
	case env["TCP_ECHO_SERVER"] != "":
		return probeTarget{port: port("TCP_PORT", 3000)}
	case env["UDP_ECHO_SERVER"] != "":
		return probeTarget{} // UDP only: ready once started
	}
	return probeTarget{port: port("HTTP_PORT", 3000)}
}
