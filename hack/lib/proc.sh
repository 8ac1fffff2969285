# Process helpers shared by hack/cluster.sh and hack/services.sh (sourced, not run).
# Each script sets DIR (its state dir) and LOG_PREFIX before sourcing. Processes are tracked by
# pid files in $DIR/pids; a pid counts as ours only while it still runs the expected program, so
# a recycled pid is never signalled.

log() { echo "$LOG_PREFIX: $*" >&2; }
die() {
  echo "$LOG_PREFIX: error: $*" >&2
  exit 1
}

pid_of() {
  local f="$DIR/pids/$1.pid"
  if [[ -f "$f" ]]; then cat "$f"; fi
}

# alive NAME PATTERN: the recorded pid exists and its command line contains PATTERN.
alive() {
  local pid
  pid="$(pid_of "$1")"
  [[ -n "$pid" ]] || return 1
  local i
  for ((i = 0; i < 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -- "$2" >/dev/null && return 0
    # The pid may be between two execs (the signal-unblocking wrapper, pyenv's python3 shim), when its
    # command line is briefly something else or empty: look again shortly before saying it is gone.
    sleep 0.1
  done
  return 1
}

# gone_why NAME: sets GONE_WHY to why `alive` said no, for an error message: the pid's exit status when it was this
# shell's child and has ended, or its command line when it still runs something that does not match. Not in a
# command substitution: a subshell cannot wait for its parent's children.
gone_why() {
  local pid rc=0
  pid="$(pid_of "$1")"
  if [[ -z "$pid" ]]; then
    GONE_WHY="no pid recorded"
  elif kill -0 "$pid" 2>/dev/null; then
    GONE_WHY="pid $pid still runs: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
  else
    wait "$pid" 2>/dev/null || rc=$?
    GONE_WHY="pid $pid ended with status $rc"
  fi
}

# start_bg NAME COMMAND...: runs detached in its own session, output to $DIR/logs/NAME.log.
# The command starts with no blocked signals: a caller such as a Swift test process may block
# SIGTERM, a child inherits that mask, and `down` would then need SIGKILL.
start_bg() {
  local name="$1"
  shift
  mkdir -p "$DIR/pids" "$DIR/logs"
  setsid python3 -c "$UNBLOCK_AND_EXEC" "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name.pid"
}
UNBLOCK_AND_EXEC='import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
os.execvp(sys.argv[1], sys.argv[1:])'

# stop_proc NAME PATTERN: TERM; a second TERM after 3 s (Kubernetes servers otherwise wait up to
# 60 s for open watches, and exit at once on a second signal); KILL after 15 s. Only our pid.
stop_proc() {
  local name="$1" pattern="$2" pid i
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]]; then return 0; fi
  if alive "$name" "$pattern"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      alive "$name" "$pattern" || break
      if ((i == 30)); then kill -TERM "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
    if alive "$name" "$pattern"; then
      log "$name (pid $pid) did not stop on TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$DIR/pids/$name.pid"
}

# die_with_log NAME MESSAGE: fails, showing the end of $DIR/logs/NAME.log (the state dir, and so
# the log, may be removed by a later `down`).
die_with_log() {
  local name="$1"
  shift
  if [[ -f "$DIR/logs/$name.log" ]]; then
    echo "$LOG_PREFIX: last lines of $DIR/logs/$name.log:" >&2
    tail -n 25 "$DIR/logs/$name.log" | sed 's/^/    /' >&2
  fi
  die "$@"
}

# True when something listens on TCP port $1.
port_in_use() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep . >/dev/null
}

# check_port_free PORT VARIABLE
check_port_free() {
  if port_in_use "$1"; then
    die "port $1 is already in use (not by a process recorded in $DIR); choose another with $2=PORT"
  fi
}
