package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/tether-sh/tether/internal/client"
)

// clientConfig is ~/.config/tether/config.toml, the client's settings.
type clientConfig struct {
	// Transport is what a bare host means: "agent" (the default: a
	// Tether agent on port 4422) or "ssh" (ssh://HOST, through OpenSSH).
	Transport string `toml:"transport"`
}

// applyTransport reads TETHER_TRANSPORT, else the client config's
// transport, and sets what bare hosts mean for this process. The
// host-side commands take no addresses and ignore it.
func applyTransport(env *Env, args []string) error {
	if len(args) > 0 && (args[0] == "serve" || args[0] == "session-host") {
		return nil
	}
	v, from := env.Getenv("TETHER_TRANSPORT"), "TETHER_TRANSPORT"
	if v == "" {
		p := filepath.Join(configDir(env), "config.toml")
		b, err := os.ReadFile(p)
		if err == nil {
			var c clientConfig
			if _, err := toml.Decode(string(b), &c); err != nil {
				return fmt.Errorf("client config %s: %w", p, err)
			}
			v, from = c.Transport, p+": transport"
		}
	}
	switch v {
	case "", "agent", "tether":
		client.SetBareHostsSSH(false)
	case "ssh":
		client.SetBareHostsSSH(true)
	default:
		return fmt.Errorf("%s = %q: use \"ssh\" (hosts through OpenSSH) or \"agent\" (a tether agent on port %d)", from, v, client.DefaultPort)
	}
	return nil
}
