package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/wire"
)

func versionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of tether and of its protocol",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(env.Stdout, "tether %s (protocol %d, %s, %s/%s)\n", Version, wire.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
