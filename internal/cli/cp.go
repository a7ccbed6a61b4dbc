package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-sh/tether/internal/client"
	"github.com/tether-sh/tether/internal/copier"
	"github.com/tether-sh/tether/internal/fold"
	"github.com/tether-sh/tether/internal/progress"
)

// remoteArg is TARGET:PATH, TARGET a comma-separated list of target
// expressions with no colon but for a port ([USER@]HOST[:PORT][/NAME],
// web[01-20]/deploy, @web).
var remoteArg = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^((?:[^:/,]+(?::[0-9]+)?(?:/[^:/,]+)?)(?:,[^:/,]+(?::[0-9]+)?(?:/[^:/,]+)?)*):(.*)$`)
})

// splitRemote splits TARGET:PATH; a path that starts with / or . (or has
// no colon) is local, as scp has it.
func splitRemote(arg string) (target, p string, ok bool) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg, false
	}
	m := remoteArg().FindStringSubmatch(arg)
	if m == nil {
		return "", arg, false
	}
	return m[1], m[2], true
}

func cpCmd(env *Env, g *globals) *cobra.Command {
	var tf targetFlags
	var o copier.Options
	var jsonOut bool
	var reconnect string
	cmd := &cobra.Command{
		Use:   "cp [-r] [-p] [--parents] [--json] SRC... DEST",
		Short: "Copy files to or from sessions (Copy-Item -ToSession/-FromSession)",
		Long: `cp copies files between this machine and sessions. One side is TARGET:PATH,
TARGET a session address (web1/deploy:conf/app.ini) or a bare host (a
temporary session, removed afterwards), or a target expression for many
(web[01-20]/deploy:/srv/). A relative remote PATH is relative to the session's
current directory (after cd in that session), ~ is the session user's home.
The files are read and written by the session host, as the session's user.

As cp and scp: into DEST when it is an existing directory, else as DEST;
-r copies directories (modes, symlinks as symlinks, empty directories); -p
keeps modification times and modes; DEST's parent must exist unless
--parents. Several targets as DEST: every target gets the copy (at most
--throttle at once). Several targets as the source: DEST/TARGET/... for each.

Every file is written under a temporary name next to its destination and
renamed into place only when its checksum on the session's side equals the
source's (XXH3-128; SHA-256 with hosts of older versions); a failed file
leaves nothing behind and the destination as it was. If the connection
breaks, cp reconnects for up to --reconnect-timeout and each file goes on
from what already arrived (checked the same way).

A progress bar (bytes, rate, ETA) shows on a terminal. --json prints one
JSON object per file ({"target","source","dest","type","bytes","xxh128"
or "sha256","resumed_bytes","error"}) and per target ({"target","files","bytes",
"error","duration_ms"}), then a summary with several targets.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcArgs, dstArg := args[:len(args)-1], args[len(args)-1]
			dstT, dstPath, dstRemote := splitRemote(dstArg)
			var srcT string
			var srcs []string
			for _, a := range srcArgs {
				t, p, remote := splitRemote(a)
				if remote == dstRemote {
					if remote {
						return usageError(cmd, "%s and %s are both remote; copy between sessions through this machine (pull, then push)", a, dstArg)
					}
					return usageError(cmd, "neither %s nor %s is remote (TARGET:PATH); use cp for local copies", a, dstArg)
				}
				if remote && srcT != "" && t != srcT {
					return usageError(cmd, "sources come from %s and from %s; copy from one target expression at a time", srcT, t)
				}
				if remote {
					srcT = t
				}
				srcs = append(srcs, p)
			}
			rt, err := parseReconnect(reconnect)
			if err != nil {
				return err
			}
			o.ReconnectTimeout = rt
			o.Notify = env.Stderr
			expr := dstT
			if !dstRemote {
				expr = srcT
			}
			targets, err := tf.resolve(cmd, env, []string{expr}, anyAddr)
			if err != nil {
				return err
			}
			s, err := g.setup(env)
			if err != nil {
				return err
			}
			defer s.Close()
			for i, t := range targets {
				targets[i] = s.display(t)
			}
			// Ctrl-C stops the copy and removes its temp files; a
			// second one kills the process at once.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			go func() { <-ctx.Done(); stop() }()
			return runCp(ctx, env, s, targets, srcs, dstPath, dstRemote, o, tf.throttle, jsonOut)
		},
	}
	tf.register(cmd)
	tf.registerThrottle(cmd)
	f := cmd.Flags()
	f.BoolVarP(&o.Recursive, "recursive", "r", false, "copy directories and what they hold")
	f.BoolVarP(&o.Preserve, "preserve", "p", false, "keep modification and access times and modes")
	f.BoolVar(&o.Parents, "parents", false, "create DEST's missing parent directories")
	f.BoolVar(&jsonOut, "json", false, "one JSON object per file and per target")
	f.StringVar(&reconnect, "reconnect-timeout", "4m", "how long to keep trying to get back after the connection breaks (0 to give up at once)")
	return cmd
}

type cpFileRecord struct {
	Target string `json:"target"`
	copier.FileResult
	Error string `json:"error,omitempty"`
}

type cpTargetRecord struct {
	Target     string `json:"target"`
	Session    string `json:"session,omitempty"`
	Files      int    `json:"files"`
	Bytes      int64  `json:"bytes"`
	Reconnects int    `json:"reconnects,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

func runCp(ctx context.Context, env *Env, s *session, targets []client.Target, srcs []string, dst string, push bool,
	o copier.Options, throttle int, jsonOut bool) error {
	many := len(targets) > 1
	var mu sync.Mutex // one line at a time, and the bar
	enc := json.NewEncoder(env.Stdout)
	var bar *progress.Bar
	if !jsonOut && isTerminal(env.Stderr) {
		bar = progress.New(env.Stderr, "copying")
	}
	// tell prints a failure line (above the bar when there is one).
	tell := func(line string) {
		if bar != nil {
			bar.Println(line)
			return
		}
		fmt.Fprintln(env.Stderr, line)
	}
	var totalMu sync.Mutex
	var total int64
	results := make([]fold.Result, len(targets))
	start := time.Now()
	client.Each(len(targets), throttle, func(i int) {
		t := targets[i]
		to := o
		to.OnTotal = func(n int64) {
			if bar != nil {
				totalMu.Lock()
				total += n
				bar.SetMax(total)
				totalMu.Unlock()
			}
		}
		if bar != nil {
			to.Progress = func(d int64) { bar.Add(d) }
		}
		told := false
		to.OnFile = func(r copier.FileResult) {
			mu.Lock()
			defer mu.Unlock()
			told = told || r.Err != nil
			switch {
			case jsonOut:
				rec := cpFileRecord{Target: t.String(), FileResult: r}
				if r.Err != nil {
					rec.Error = r.Err.Error()
				}
				enc.Encode(rec)
			case r.Err != nil:
				tell("tether: " + describeErr(t, r.Err))
			}
		}
		begin := time.Now()
		var st copier.Stats
		var err error
		if push {
			st, err = copier.Push(ctx, s.dialer, t, srcs, dst, to)
		} else {
			local := dst
			if many {
				// rpdcp: DEST/TARGET/…, each target into its own directory.
				local = filepath.Join(dst, filepath.FromSlash(strings.ReplaceAll(t.String(), "..", "_")))
				if err = os.MkdirAll(local, 0o755); err != nil {
					err = fmt.Errorf("mkdir %s: %w", local, err)
				}
			}
			if err == nil {
				st, err = copier.Pull(ctx, s.dialer, t, srcs, local, to)
			}
		}
		code := 0
		if err != nil {
			code = 1
			var he *client.HostError
			if errors.As(err, &he) || errors.Is(err, client.ErrTransport) || errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrClosed) {
				code = 255
			}
		}
		results[i] = fold.Result{Target: t.String(), ExitStatus: code, Err: err}
		mu.Lock()
		defer mu.Unlock()
		if jsonOut {
			rec := cpTargetRecord{Target: t.String(), Session: st.Session, Files: st.Files, Bytes: st.Bytes, Reconnects: st.Reconnects,
				DurationMS: time.Since(begin).Milliseconds()}
			if err != nil {
				rec.Error = err.Error()
			}
			enc.Encode(rec)
		} else if err != nil && !told && ctx.Err() == nil {
			// File failures were told as they happened; a target that
			// failed as a whole is told here.
			tell("tether: " + describeErr(t, err))
		}
	})
	if bar != nil {
		bar.Finish()
	}
	if ctx.Err() != nil {
		fmt.Fprintln(env.Stderr, "tether: cp interrupted; the files not yet in place were removed")
		return exitError{130}
	}
	worst := 0
	for _, r := range results {
		worst = max(worst, r.ExitStatus)
	}
	if many {
		sum := fold.Summarize(results, time.Since(start))
		switch {
		case jsonOut:
			sum.WriteJSON(env.Stdout)
		case sum.Failed > 0 || isTerminal(env.Stdout) || isTerminal(env.Stderr):
			fmt.Fprint(env.Stderr, sum.Text())
		}
	}
	if worst != 0 {
		return exitError{worst}
	}
	return nil
}
