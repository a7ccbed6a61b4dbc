// Package cpuid stands in for github.com/klauspost/cpuid/v2 in Tether's
// build (a replace directive in Tether's go.mod): it answers the one
// question github.com/zeebo/xxh3 asks of it — which of SSE2, AVX2 and
// AVX512F the CPU and OS support — from golang.org/x/sys/cpu.
//
// Why (#18): klauspost/cpuid's init detects everything (cache sizes,
// vendor, brand string, hundreds of features) with some forty CPUID
// instructions, and in a virtual machine each one exits to the
// hypervisor: 0.4 ms of every tether process's start — a tenth of `tether
// version` — for three bits. x/sys/cpu asks six. Anything but Has on these
// three features is left out on purpose: a package that needs more must
// not build against this.
package cpuid

import "golang.org/x/sys/cpu"

// FeatureID is a CPU feature.
type FeatureID int

// The features xxh3 asks about.
const (
	UNKNOWN FeatureID = iota
	SSE2
	AVX2
	AVX512F
)

// CPUInfo describes the CPU.
type CPUInfo struct{}

// CPU is the CPU this process runs on.
var CPU CPUInfo

// Has reports whether the CPU (and the OS, for AVX's registers) supports f.
func (CPUInfo) Has(f FeatureID) bool {
	switch f {
	case SSE2:
		return cpu.X86.HasSSE2
	case AVX2:
		return cpu.X86.HasAVX2
	case AVX512F:
		return cpu.X86.HasAVX512F
	}
	return false
}
