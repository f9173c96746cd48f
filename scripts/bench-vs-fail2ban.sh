#!/usr/bin/env bash
# gatewatch beside fail2ban on the same NGINX `combined` access log, in one run (issue #14:
# "NGINX text: at least 20x fail2ban-regex on the same file").
#
# The file is an hour of simulated traffic (`gatewatch simulate --format nginx`: 300 clients,
# about 150k lines, with a brute force and a credential stuffing among them). fail2ban-regex
# (Debian's `fail2ban`) runs a filter that matches the lines of a 401 or 403, with its own
# CLF date template; it only matches lines, it does not count them per address or ban.
# gatewatch runs the whole `replay` on one thread: parse, scrub, every shipped detector, alerts.
#
# CPU time (user + system) of each whole process, start-up included, median of the rounds;
# the ratio is the figure to compare across machines.
#
#   scripts/bench-vs-fail2ban.sh            3 rounds
#   ROUNDS=5 scripts/bench-vs-fail2ban.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v fail2ban-regex >/dev/null || { echo "needs fail2ban-regex: apt-get install fail2ban" >&2; exit 2; }
rounds=${ROUNDS:-3}
# shellcheck source=scripts/release-bin.sh
source scripts/release-bin.sh
log=$tmp/access.log
"$bin" simulate --format nginx > "$log"
lines=$(wc -l < "$log")
cat > "$tmp/filter.conf" <<'EOF'
[Definition]
# fail2ban cuts the date out of the line before the failregex runs: hence the empty `\[\]`.
failregex = ^<HOST> \S+ \S+ \[\] "[A-Z]+ [^"]*" (?:401|403) 
datepattern = ^[^\[]*\[({DATE})
EOF

# CPU seconds (user + system) of one command, its output kept in $tmp/out.
cpu() {
  /usr/bin/time -f '%U %S' -o "$tmp/time" "$@" > "$tmp/out" 2>&1
  awk '{ printf "%.2f\n", $1 + $2 }' "$tmp/time"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: > "$tmp/f2b"; : > "$tmp/gw"
for _ in $(seq "$rounds"); do
  cpu fail2ban-regex "$log" "$tmp/filter.conf" >> "$tmp/f2b"
  matched=$(sed -n 's/^Lines: .*, \([0-9]*\) matched,.*/\1/p' "$tmp/out")
  cpu "$bin" replay --threads 0 --format nginx --input "$log" --alerts "$tmp/alerts.jsonl" >> "$tmp/gw"
done
f2b=$(median < "$tmp/f2b")
gw=$(median < "$tmp/gw")
flagged=$(sed -n 's/.*"entity":{"kind":"\([a-z_]*\)","id":"\([^"]*\)".*/\1=\2/p' "$tmp/alerts.jsonl" | sort -u | tr '\n' ' ')
echo "NGINX combined, simulated hour: $lines lines, $rounds rounds, CPU time (user + system), median"
awk -v n="$lines" -v t="$f2b" -v m="$matched" 'BEGIN { printf "  fail2ban-regex (match only)   %6.2f s  %9.0f lines/s per core  (%d lines matched)\n", t, n / t, m }'
awk -v n="$lines" -v t="$gw" 'BEGIN { printf "  gatewatch replay --threads 0  %6.2f s  %9.0f lines/s per core\n", t, n / t }'
echo "  gatewatch alerted on: ${flagged:-nothing}"
awk -v a="$f2b" -v b="$gw" 'BEGIN { printf "  gatewatch is %.1fx fail2ban-regex (aim: at least 20x)\n", a / b }'
