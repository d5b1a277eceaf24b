package watertun

import (
	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

func setName(c *water.Config, name string) { c.Name = name }

func setNetwork(*water.Config, string) {}

// setMTU sets the interface MTU with SIOCSIFMTU, which water does not do.
func setMTU(name string, mtu int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	return unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr)
}
