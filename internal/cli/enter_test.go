package cli

import (
	"context"
	"strings"
	"testing"
)

func TestEnterUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enter"}, "accepts 1 arg(s), received 0\nusage: tether enter"},
		{[]string{"enter", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"enter", "--reconnect-timeout", "soon", "vm/s"}, `bad --reconnect-timeout "soon": use a Go duration like 30s or 4m`},
		{[]string{"enter", "vm/s/t"}, "vm/s/t"},
	} {
		env, out, errb := importTestEnv(t)
		code := Run(context.Background(), env, tc.args)
		if code != 255 || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("tether %s: exit %d, stdout %q, stderr %q; want 255 and %q", strings.Join(tc.args, " "), code, out, errb, tc.want)
		}
	}
	env, _, _ := importTestEnv(t)
	if err := runEnter(context.Background(), env, &globals{}, enterOpts{reconnect: "4m"}, nil); err == nil {
		t.Fatal("runEnter without a target: no error")
	}
}
