// Package examples holds the manifests used by the README, the docs and the
// tests; the Go side only embeds them so tests can apply exactly these files.
package examples
