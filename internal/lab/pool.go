package lab

import (
	"fmt"
	"net/netip"
)

// PoolCapacity is how many B4s the AFTR's pool can give a set of
// portsPerB4 ports: every address of the prefix split into aligned blocks
// of that size, less the blocks holding ports 0-1023, which the AFTR never
// hands out (RFC 7596 §5.1; bindings.Pool). 0 for a pool or size that
// makes no set.
func PoolCapacity(pool netip.Prefix, portsPerB4 int) int {
	if !pool.IsValid() || !pool.Addr().Is4() || portsPerB4 < 2 || portsPerB4 > 32768 || portsPerB4&(portsPerB4-1) != 0 {
		return 0
	}
	perAddr := 65536/portsPerB4 - max(1024/portsPerB4, 1)
	return perAddr << (32 - pool.Bits())
}

// CheckPool fails when pool cannot hold b4s B4s at portsPerB4 ports each,
// naming all three, before anything is built (a lab that would wait for
// B4s that can never be provisioned).
func CheckPool(pool netip.Prefix, portsPerB4, b4s int) error {
	if c := PoolCapacity(pool, portsPerB4); c < b4s {
		return fmt.Errorf("lab: pool %v holds %d B4s at %d ports per B4 (%d per address, ports 0-1023 never handed out); %d B4s asked: use a larger pool or fewer ports per B4",
			pool, c, portsPerB4, PoolCapacity(netip.PrefixFrom(pool.Addr(), 32), portsPerB4), b4s)
	}
	return nil
}

// PoolFor is the smallest prefix of 192.0.2.0/24, from /30 (the lab's
// default) down, that holds b4s B4s at portsPerB4 ports each; false when
// even the /24 does not.
func PoolFor(b4s, portsPerB4 int) (netip.Prefix, bool) {
	for bits := 30; bits >= 24; bits-- {
		p := netip.PrefixFrom(netip.MustParseAddr("192.0.2.0"), bits)
		if PoolCapacity(p, portsPerB4) >= b4s {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
