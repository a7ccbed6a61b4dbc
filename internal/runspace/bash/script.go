package bash

// initScript is the first thing the bash process runs (sourced at top level,
// so every name it defines is global). The %s are the quoted paths of the
// state files opts, snap0, snap1 and exit (memfile.go).
//
// Protocol, one line per command on bash's stdin (see [commandLine]):
//
//	__tether_s=SEQ __tether_p=NAME __tether_O=OUT __tether_E=ERR; { [builtin printf 'O SEQ\n' >&63;] [__tether_ret LAST && :;] { . CMDFILE; } 63>&-; } <IN >"$__tether_O" 2>"$__tether_E"; __tether_done
//
//	  - bash reads its input a buffer at a time (--noediting: readline
//	    would read it a byte at a time) and parses the line once: no eval.
//	  - fd 63 is the private done pipe; the group closes it so that nothing the
//	    command starts (a background job) holds it: EOF on it means bash died.
//	  - "O SEQ" (only when IN is the Shell's stdin pipe) says bash opened
//	    the streams.
//	  - __tether_ret restores $? of the previous command (only when it is
//	    not 0: $? is 0 as a line starts, the last one ended with
//	    __tether_done, and PROMPT_COMMAND leaves $? alone).
//	  - CMDFILE is the command file's /proc/PID/fd path; a stateless
//	    command (below) is in the line itself instead: { WORDS; }.
//	  - __tether_done, at the end of the line or (after SIGINT aborted the
//	    line) from PROMPT_COMMAND, writes "D SEQ STATUS" and then snapshots
//	    the state into one of two files. __tether_s tells the two apart: it
//	    is set by the line and unset by the first report.
//	  - NAME is "-", or the name of the one simple command the text is
//	    when the Shell found that it can change no shell state (see
//	    [stateless]): then, unless NAME is a function or an alias, a
//	    DEBUG/ERR/RETURN trap was set (through `trap`: __tether_tr) or
//	    another PROMPT_COMMAND may have run, the last snapshot still holds
//	    the state and none is taken ("D SEQ STATUS k").
//	  - __tether_exit is bash's EXIT trap: `exit`, a `set -e` failure or
//	    anything else that ends bash snapshots into "exit" first, after running
//	    the user's own EXIT trap, which `trap` (a function) keeps aside.
//
// Everything here is a builtin: no command forks.
const initScript = `exec 63>&3 3>&-
set +H +o history
HISTFILE= PS1= PS2= PS0=
declare -A __tether_F=([opts]=%s [snap0]=%s [snap1]=%s [exit]=%s)
__tether_n=0
__tether_ret() { return "$1"; }
# The options (shopt -p, set +o: most of a snapshot's lines, each a write)
# go to "opts" only when they changed; a restore reads the snapshot, then
# opts.
__tether_snap() {
	if [[ "$BASHOPTS $SHELLOPTS" != "$__tether_os" ]]; then
		{
			builtin shopt -p
			builtin set +o
			builtin printf '# tether-end 0 0\n'
		} >|"${__tether_F[opts]}" 2>/dev/null && __tether_os="$BASHOPTS $SHELLOPTS"
	fi
	{
		builtin declare -p
		builtin declare -f
		builtin alias -p
		builtin trap -p
		builtin umask -p
		builtin printf 'builtin cd -- %%q\n' "$PWD"
		builtin printf '# tether-end %%s %%s\n' "$1" "$2"
	} >|"${__tether_F[$3]}" 2>/dev/null
}
__tether_done() {
	__tether_st=$?
	[[ -v __tether_s ]] || return 0
	# A stateless command left the last snapshot true (bash's stdout,
	# where declare -F prints a name it finds, is /dev/null).
	if [[ -v __tether_p && $__tether_p != - && ! -v __tether_tr ]] && (( ${#PROMPT_COMMAND[@]} == 1 )) &&
		[[ ! -v BASH_ALIASES[$__tether_p] ]] && ! builtin declare -F -- "$__tether_p"; then
		builtin printf 'D %%s %%s k\n' "$__tether_s" "$__tether_st" >&63
		builtin unset -v __tether_s __tether_p
		return 0
	fi
	builtin unset -v __tether_p
	# The status first: the snapshot is off the command's latency (bash
	# reads the next command line after it).
	builtin printf 'D %%s %%s\n' "$__tether_s" "$__tether_st" >&63
	# A PROMPT_COMMAND the command set keeps this one first.
	[[ ${PROMPT_COMMAND[0]} == __tether_done ]] || PROMPT_COMMAND=(__tether_done "${PROMPT_COMMAND[@]}")
	__tether_n=$(( 1 - __tether_n ))
	__tether_snap "$__tether_s" "$__tether_st" "snap$__tether_n"
	builtin unset -v __tether_s
	return 0
}
# abortSignal (Go's Interrupt, after the grace period, just before it kills
# what ignored SIGINT): bash runs on after a program that did not die of
# SIGINT, so this trap, run when that program is gone, interrupts bash
# itself and the rest of the line is not run.
__tether_abort() { builtin kill -INT $$; }
builtin trap __tether_abort RTMAX-1
__tether_exit() {
	__tether_st=$?
	if [[ -v __tether_uexit ]]; then
		# exit inside the eval'd wrapper has undone its redirections by
		# now: the user's trap writes to the command's streams again
		# (their readers are held until the command ends).
		if [[ -v __tether_s ]]; then
			__tether_ret "$__tether_st"
			builtin eval -- "$__tether_uexit" >>"$__tether_O" 2>>"$__tether_E"
		else
			__tether_ret "$__tether_st"
			builtin eval -- "$__tether_uexit"
		fi
	fi
	if [[ -v __tether_s ]]; then __tether_snap "$__tether_s" "$__tether_st" exit; fi
}
trap() {
	if (( $# == 0 )) || [[ $1 == -p ]]; then
		if [[ -v __tether_uexit ]]; then builtin trap -- "$__tether_uexit" EXIT; else builtin trap - EXIT; fi
		builtin trap - RTMAX-1
		builtin trap "$@"
		builtin set -- $?
		builtin trap -- __tether_exit EXIT
		builtin trap __tether_abort RTMAX-1
		return "$1"
	fi
	if [[ $1 == -l ]]; then builtin trap "$@"; return; fi
	if [[ $1 == -- ]]; then shift; fi
	if (( $# < 2 )); then builtin trap "$@"; return; fi
	local __tether_a=$1 __tether_x __tether_l=()
	shift
	for __tether_x; do
		case ${__tether_x^^} in
		DEBUG|ERR|RETURN)
			# They may change the state around any command: from now on
			# every command snapshots.
			__tether_tr=1
			__tether_l+=("$__tether_x");;
		EXIT|0|SIGEXIT)
			# A snapshot's trap -p holds our own EXIT trap: not the user's.
			if [[ $__tether_a == - ]]; then builtin unset -v __tether_uexit
			elif [[ $__tether_a != __tether_exit ]]; then __tether_uexit=$__tether_a; fi;;
		*) __tether_l+=("$__tether_x");;
		esac
	done
	if (( ${#__tether_l[@]} )); then builtin trap -- "$__tether_a" "${__tether_l[@]}"; fi
}
builtin trap -- __tether_exit EXIT
PROMPT_COMMAND=__tether_done
`

// profileScript runs the login files as `bash -l` would read them.
const profileScript = `if [ -r /etc/profile ]; then . /etc/profile; fi
if [ -r ~/.bash_profile ]; then . ~/.bash_profile
elif [ -r ~/.bash_login ]; then . ~/.bash_login
elif [ -r ~/.profile ]; then . ~/.profile
fi
`
