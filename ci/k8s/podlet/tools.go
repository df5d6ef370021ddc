//go:build tools

// Package tools pins the conformance suite's echo server, built from the suite's module.
package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
	_ "sigs.k8s.io/gateway-api/pkg/consts" // pins the CRDs (config/crd in the module zip)
)
