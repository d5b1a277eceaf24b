#!/usr/bin/env bash
# The failover table of BENCHMARKS.md: lw4o6-lab --scenario aftr-restart for
# N = 10, 100, 1000 B4s (10 % of them idle), each failover mode, without and
# with the AFTR's journal. Writes one JSON report per run into DIR (default
# ./failover-results) and prints each run's summary line. Unprivileged;
# about 15 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-failover-results}
mkdir -p "$out"
go build -o "$out/lw4o6-lab" ./cmd/lw4o6-lab || exit 1
for n in 10 100 1000; do
  for mode in icmp announce both; do
    for journal in no yes; do
      flag=""; [ "$journal" = yes ] && flag="--journal"
      f="$out/n$n-$mode-journal-$journal.json"
      "$out/lw4o6-lab" --scenario aftr-restart --b4s "$n" --failover "$mode" $flag --json > "$f"
      echo "n=$n failover=$mode journal=$journal exit=$? -> $f"
    done
  done
done
