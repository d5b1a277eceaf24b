package ifsetup

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
)

// up uses netsh on the wintun adapter.
func up(c Config) error {
	run := func(args ...string) error {
		if out, err := exec.Command("netsh", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ifsetup: netsh %v: %v: %s", args, err, out)
		}
		return nil
	}
	if c.Addr.IsValid() {
		mask := net.IP(net.CIDRMask(c.Addr.Bits(), 32)).String()
		if err := run("interface", "ipv4", "set", "address", "name="+c.Name, "static", c.Addr.Addr().String(), mask); err != nil {
			return err
		}
	}
	if c.MTU > 0 {
		if err := run("interface", "ipv4", "set", "subinterface", c.Name, "mtu="+strconv.Itoa(c.MTU), "store=active"); err != nil {
			return err
		}
	}
	for _, p := range c.Routes {
		if err := run("interface", "ipv4", "add", "route", p.String(), c.Name, "store=active"); err != nil {
			return err
		}
	}
	if c.DefaultRoute {
		if err := run("interface", "ipv4", "add", "route", "0.0.0.0/0", c.Name, "metric=1", "store=active"); err != nil {
			return err
		}
	}
	return nil
}
