package watertun

import (
	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// setName asks for a utun interface; water only accepts "" or "utunN".
func setName(c *water.Config, name string) {
	c.Name = name
	c.Driver = water.MacOSDriverSystem
}

func setNetwork(*water.Config, string) {}

// setMTU sets the interface MTU with SIOCSIFMTU, which water does not do.
func setMTU(name string, mtu int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ifr unix.IfreqMTU
	copy(ifr.Name[:], name)
	ifr.MTU = int32(mtu)
	return unix.IoctlSetIfreqMTU(fd, &ifr)
}
