#!/usr/bin/env bash
# The laptop lab: an AFTR and a B4 as two unprivileged processes joined by
# the UDP underlay on loopback (lab only: real deployments carry IPv6 next
# header 4). The B4's LAN is a SOCKS5 front end; the AFTR's Internet side
# re-originates flows from host sockets. No root, no TUN.
#
#   ./examples/laptop-lab/run.sh            # then, in another shell:
#   curl --socks5 127.0.0.1:1080 http://127.0.0.1:8000/   (any server on this host)
set -euo pipefail
cd "$(dirname "$0")/../.."
go build -o bin/ ./cmd/lw4o6-aftr ./cmd/lw4o6-b4

bin/lw4o6-aftr --ipv6 2001:db8::1 --underlay udp --underlay-listen 127.0.0.1:4666 \
  --ipv4-side host --egress-allow-loopback --pool 192.0.2.0/30 --ports-per-b4 4096 &
aftr=$!
b4=""
# Both daemons stop whenever this script does (an exec would lose the trap
# and orphan the AFTR): the B4 first, so that its binding's delete reaches
# the AFTR.
trap '[ -n "$b4" ] && kill $b4 2>/dev/null && wait $b4; kill $aftr 2>/dev/null; wait' EXIT
trap 'exit 130' INT TERM
sleep 0.5

# The B4's IPv6 address is virtual on the UDP underlay: any documentation
# address works; the AFTR binds its UDP endpoint at its first PCP exchange.
bin/lw4o6-b4 --aftr 2001:db8::1 --ipv6 2001:db8:b4::1 --underlay udp \
  --underlay-peer 127.0.0.1:4666 --socks5 127.0.0.1:1080 --allow-loopback &
b4=$!
# Until either daemon ends (or a signal stops the script).
wait -n $aftr $b4
