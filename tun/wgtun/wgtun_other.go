//go:build !linux

package wgtun

import (
	"errors"
	"os"

	wg "golang.zx2c4.com/wireguard/tun"
)

// create ignores WithoutOffload: only Linux TUNs have offloads.
func create(name string, mtu int, _ config) (wg.Device, error) {
	return wg.CreateTUN(name, mtu)
}

// writeAll writes every packet with wireguard-go's macOS and Windows
// Write, which stops at the first failure and returns its index.
func writeAll(dev wg.Device, bufs [][]byte, offset int) (int, error) {
	sent := 0
	var first error
	for len(bufs) > 0 {
		n, err := dev.Write(bufs, offset)
		sent += n
		if err == nil {
			break
		}
		if first == nil {
			first = err
		}
		if n >= len(bufs) || errors.Is(err, os.ErrClosed) {
			break
		}
		bufs = bufs[n+1:] // skip the packet that failed
	}
	return sent, first
}
