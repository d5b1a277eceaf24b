package wgtun

import (
	"os"

	"golang.org/x/sys/unix"
	wg "golang.zx2c4.com/wireguard/tun"
)

func create(name string, mtu int, c config) (wg.Device, error) {
	if c.offload {
		return wg.CreateTUN(name, mtu)
	}
	// wg.CreateTUN always asks for IFF_VNET_HDR; without it, the same
	// Device does one plain packet per Read and Write.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true) // so that Close unblocks Read
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	dev, err := wg.CreateTUNFromFile(f, mtu)
	if err != nil {
		f.Close()
	}
	return dev, err
}

// writeAll writes with wireguard-go's Linux Write, which tries every packet
// (coalescing TCP and UDP ones when offloads are on), counts octets rather
// than packets and joins the errors of the writes that failed.
func writeAll(dev wg.Device, bufs [][]byte, offset int) (int, error) {
	_, err := dev.Write(bufs, offset)
	if err == nil {
		return len(bufs), nil
	}
	failed := 1
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		failed = len(j.Unwrap())
	}
	return max(len(bufs)-failed, 0), firstOf(err)
}

// firstOf returns the first of joined errors.
func firstOf(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0]
	}
	return err
}
