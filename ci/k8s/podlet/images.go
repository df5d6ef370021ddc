package main

import (
	"os"
	"path"
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

// imageMap maps an image repository (the reference without tag or digest) to a local binary:
// the built-in entries first, then dir/<last element of the repository> if it is executable.
type imageMap struct {
	builtin map[string]image
	dir     string
}

// defaultImages covers every image the Gateway API conformance suite (v1.6.x) uses:
// echo-basic (HTTP, h2c, HTTPS, gRPC, TCP and UDP modes, chosen by env) is built from
// the suite's own module; coredns, used only as a UDP backend, is replaced by the
// podlet's small DNS server.
func defaultImages(binDir, imageDir string) imageMap {
	echo := image{bin: filepath.Join(binDir, "echo-basic"), probe: echoProbe}
	return imageMap{dir: imageDir, builtin: map[string]image{
		"registry.k8s.io/gateway-api/echo-basic":    echo,
		"gcr.io/k8s-staging-gateway-api/echo-basic": echo,
		"registry.k8s.io/coredns/coredns":           {bin: filepath.Join(binDir, "podlet"), args: []string{"dns"}},
	}}
}

func (m imageMap) lookup(ref string) (image, bool) {
	repo := ref
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if img, ok := m.builtin[repo]; ok {
		return img, true
	}
	if name := path.Base(repo); m.dir != "" && name != "." && name != ".." && name != "/" {
		bin := filepath.Join(m.dir, name)
		if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return image{bin: bin}, true
		}
	}
	return image{}, false
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
