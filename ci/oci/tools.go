//go:build tools

// The OCI tools the WASMPlugin tests use, pinned here: the CNCF distribution registry and
// the oras client (ci/oci/tools builds them).
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
	_ "oras.land/oras/cmd/oras"
)
