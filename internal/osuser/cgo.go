//go:build cgo && !osusergo

package osuser

// nssFallback: os/user asks the C library, which asks NSS itself.
const nssFallback = false
