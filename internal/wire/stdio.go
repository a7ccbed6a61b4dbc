package wire

// StdioReady is the line `tether serve --stdio` writes before its SSH
// version string. A client reading the stdio agent through ssh skips all
// before it: a login profile may print anything, even without a final
// newline, which would otherwise run into the version line. The number
// is the stdio framing's version.
const StdioReady = "tether-stdio-ready-1"
