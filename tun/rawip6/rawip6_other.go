//go:build !linux

package rawip6

import (
	"fmt"
	"runtime"
)

type sys struct{}

func (d *Device) open() error {
	return fmt.Errorf("%w (GOOS=%s)", ErrNotSupported, runtime.GOOS)
}

// Read implements tun.Device; Open never returns a Device here.
func (d *Device) Read([][]byte, []int, int) (int, error) { return 0, ErrNotSupported }

// Write implements tun.Device; Open never returns a Device here.
func (d *Device) Write([][]byte, int) (int, error) { return 0, ErrNotSupported }

// Close implements tun.Device.
func (d *Device) Close() error { return nil }
