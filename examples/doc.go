// Package examples holds the manifests used by the README, the docs and the
// tests. They are embedded so tests apply exactly the files users read.
package examples

import "embed"

// Manifests holds every example manifest by file name.
//
//go:embed *.yaml
var Manifests embed.FS
