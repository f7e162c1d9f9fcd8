#!/bin/bash
# Inbound `mailctl serve` beside a stock Postfix, in the same run, driven by Postfix's own load generator
# (smtp-source): MESSAGES messages of 4 KiB over SESSIONS sessions, once with a new connection per message
# (smtp-source's default, how most MX traffic arrives) and once with connections reused (-d). Each server
# files the mail into a Maildir (Postfix: its virtual(8) agent; serve: its own Maildir delivery, SQLite
# store, checks off); the rate counts a message when its file is in new/. CPU is user + system from /proc:
# serve's one process; Postfix's master plus its live children plus the children it reaped (cutime/cstime).
#
# Run as root on a machine with postfix installed (it installs nothing, and says "skipped" otherwise):
#   benches/postfix-compare.sh [MESSAGES] [SESSIONS]      (defaults 5000 and 16)
# MAILCTL names the mailctl binary (default target/release/mailctl, built if missing).
set -euo pipefail
N=${1:-5000}
S=${2:-16}
if [ ! -x /usr/sbin/postfix ] || [ ! -x /usr/sbin/smtp-source ]; then
  echo "postfix-compare: skipped (postfix and its smtp-source are not installed)"; exit 0
fi
if [ "$(id -u)" != 0 ]; then echo "postfix-compare: skipped (Postfix's master starts as root)"; exit 0; fi
cd "$(dirname "$0")/.."
M=${MAILCTL:-target/release/mailctl}
[ -x "$M" ] || cargo build --release --quiet
D=$(mktemp -d /tmp/postfix-compare.XXXXXX)
chmod 755 "$D"
PF=$D/postfix
SERVE_PID=
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
  /usr/sbin/postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
  sleep 1
  [ -n "${KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TCK=$(getconf CLK_TCK)

# Ticks of CPU of process $1 (with reaped children when $2 = tree, plus its live children).
cpu_ticks() {
  local pid=$1 total f
  read -r -a f < <(sed 's/.*) //' "/proc/$pid/stat")
  total=$(( f[11] + f[12] ))
  if [ "${2:-}" = tree ]; then
    total=$(( total + f[13] + f[14] ))
    for c in $(pgrep -P "$pid" || true); do
      read -r -a f < <(sed 's/.*) //' "/proc/$c/stat" 2>/dev/null || echo "x")
      [ "${#f[@]}" -gt 14 ] && total=$(( total + f[11] + f[12] ))
    done
  fi
  echo "$total"
}

# Sends N messages with smtp-source (extra flags $3) to port $1 and waits until N files are in Maildir $2;
# prints "msgs/s cpu_us_per_msg" for the process (tree) $4 [$5].
measure() {
  local port=$1 maildir=$2 flags=$3 pid=$4 kind=${5:-}
  rm -rf "$maildir"/new/* "$maildir"/cur/* 2>/dev/null || true
  local before start end after count
  before=$(cpu_ticks "$pid" "$kind")
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  /usr/sbin/smtp-source $flags -s "$S" -m "$N" -l 4096 -f bench@bench.test -t alice@example.test \
    "127.0.0.1:$port" >/dev/null
  for _ in $(seq 1 600); do
    count=$(find "$maildir/new" -type f 2>/dev/null | wc -l)
    [ "$count" -ge "$N" ] && break
    sleep 0.05
  done
  end=$(date +%s.%N)
  if [ "$count" -lt "$N" ]; then
    echo "postfix-compare: only $count of $N messages reached $maildir within 30 s" >&2
    exit 1
  fi
  after=$(cpu_ticks "$pid" "$kind")
  python3 -c "n=$N; t=$end-$start; cpu=($after-$before)*1e6/$TCK/n; print(f'{n/t:.0f} {cpu:.0f}')"
}

# A private Postfix: virtual(8) delivers alice@example.test into a Maildir.
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PF/vmail"
chown postfix "$PF/data"
chown nobody "$PF/vmail"
PF_PORT=$(free_port)
cat > "$PF/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file = $PF/postfix.log
maillog_file_prefixes = $PF
myhostname = mx.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
biff = no
alias_maps =
alias_database =
virtual_mailbox_domains = example.test
virtual_mailbox_base = $PF/vmail
virtual_mailbox_maps = inline:{ alice@example.test=example.test/alice/ }
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
virtual_minimum_uid = 1
CONF
{
  echo "127.0.0.1:$PF_PORT inet n - n - - smtpd"
  sed -n '/^const SERVICES/,/^";/p' tests/it/interop/harness/postfix.rs | sed '1d;$d'
} > "$PF/etc/master.cf"
/usr/sbin/postfix -c "$PF/etc" check
/usr/sbin/postfix -c "$PF/etc" start
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT") 2>/dev/null && break; sleep 0.1; done
PF_PID=$(tr -d ' ' < "$PF/queue/pid/master.pid")

# serve on the same machine: SQLite, checks off, Maildir delivery.
MC=$D/serve
mkdir -p "$MC/vmail"
MC_PORT=$(free_port)
cat > "$MC/mailctl.toml" <<CONF
[database]
url = "sqlite://$MC/mailctl.db"
[mail]
vmail_root = "$MC/vmail"
[server]
hostname = "mx.example.test"
queue.spool_dir = "$MC/spool"
[server.limits]
max_connections_per_ip = 1000
[server.checks]
spf = "off"
dkim = "off"
dmarc = "off"
iprev = "off"
dnsbl = "off"
CONF
"$M" --config "$MC/mailctl.toml" -q domain add example.test
echo "correct horse battery" | "$M" --config "$MC/mailctl.toml" -q mailbox add alice@example.test --password-stdin
"$M" --config "$MC/mailctl.toml" serve --listen "smtp=127.0.0.1:$MC_PORT" > "$MC/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null && break; sleep 0.1; done

echo "postfix-compare: $N messages of 4 KiB, $S sessions, smtp-source as the client; $(nproc) cores; $(/usr/sbin/postconf -d mail_version 2>/dev/null)"
printf '%-26s %12s %16s %12s %16s %10s\n' mode "postfix msg/s" "postfix CPU/msg" "serve msg/s" "serve CPU/msg" "CPU ratio"
for mode in new reuse; do
  flags=""; [ "$mode" = reuse ] && flags="-d"
  # (A failed measurement ends the script: set -e applies to the assignment.)
  pf=$(measure "$PF_PORT" "$PF/vmail/example.test/alice" "$flags" "$PF_PID" tree)
  mc=$(measure "$MC_PORT" "$MC/vmail/example.test/alice" "$flags" "$SERVE_PID")
  read -r pf_rate pf_cpu <<< "$pf"
  read -r mc_rate mc_cpu <<< "$mc"
  label="new connection per message"; [ "$mode" = reuse ] && label="connections reused (-d)"
  printf '%-26s %12s %13s us %12s %13s us %9sx\n' "$label" "$pf_rate" "$pf_cpu" "$mc_rate" "$mc_cpu" \
    "$(python3 -c "print(f'{$pf_cpu/max($mc_cpu,1):.1f}')")"
done
