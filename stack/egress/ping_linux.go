package egress

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// listenPing4 opens an unprivileged ICMP echo socket bound to address (empty
// for any), as golang.org/x/net/icmp.ListenPacket("udp4", ...) does. The
// kernel allows it when the process's group is in net.ipv4.ping_group_range;
// otherwise socket(2) fails with EACCES.
func listenPing4(address string) (net.PacketConn, error) {
	sa := &syscall.SockaddrInet4{}
	if address != "" {
		a, err := netip.ParseAddr(address)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("egress: ping4 address %q: not an IPv4 address", address)
		}
		sa.Addr = a.As4()
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_ICMP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "ping4")
	defer f.Close() // FilePacketConn dups the descriptor
	return net.FilePacketConn(f)
}
