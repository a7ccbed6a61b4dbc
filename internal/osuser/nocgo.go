//go:build !cgo || osusergo

package osuser

// nssFallback: os/user reads the files only; getent asks NSS.
const nssFallback = true
