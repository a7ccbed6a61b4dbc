#!/usr/bin/env bash
# `make run`: start a Tether agent for you on 127.0.0.1:4422 (if none is
# running) with a Tether-only key pair under ~/.config/tether, and open a
# session to it. Never touches ~/.ssh.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/tether
cfg=${XDG_CONFIG_HOME:-$HOME/.config}/tether
state=${XDG_STATE_HOME:-$HOME/.local/state}/tether-dev
addr=${TETHER_RUN_ADDR:-127.0.0.1:4422}   # tests use another port
port=${addr##*:}
mkdir -p "$cfg" "$state"
chmod 700 "$cfg"

"$bin" keygen "$cfg/id_ed25519"
ak="$cfg/authorized_keys"
if ! grep -qsF "$(cut -d' ' -f1-2 "$cfg/id_ed25519.pub")" "$ak"; then
  cat "$cfg/id_ed25519.pub" >>"$ak"
fi
chmod 600 "$ak"

if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  echo "starting tether serve on $addr (log: $state/agent.log)"
  nohup "$bin" serve --listen "$addr" --state "$state" --authorized-keys "$ak" \
    --policy "$cfg/policy.toml" >>"$state/agent.log" 2>&1 &
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.05
  done
else
  echo "an agent already listens on $addr"
fi

host=127.0.0.1
[ "$port" = 4422 ] || host=127.0.0.1:$port
session=$("$bin" -i "$cfg/id_ed25519" new "$host")
echo "opened session $session"
"$bin" -i "$cfg/id_ed25519" invoke "$session" 'echo "hello from $(hostname) as $(id -un), in $PWD"'
cat <<EOT

Try:
  bin/tether invoke $session 'x=42; cd /tmp'
  bin/tether invoke $session 'echo \$x; pwd'
  bin/tether list
  bin/tether disconnect $session; bin/tether connect $session; bin/tether receive $session
  bin/tether remove $session
(The key in $cfg/id_ed25519 is offered automatically.)
Stop the agent with: bin/tether serve --stop --state $state
(sessions outlive it; bin/tether remove $session closes this one)
EOT
