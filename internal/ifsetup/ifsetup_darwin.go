package ifsetup

import (
	"fmt"
	"os/exec"
	"strconv"
)

// up uses ifconfig and route: utun interfaces are point-to-point, so the
// address is given as local and peer.
func up(c Config) error {
	args := []string{c.Name}
	if c.Addr.IsValid() {
		a := c.Addr.Addr().String()
		args = append(args, "inet", a, a, "netmask", "255.255.255.255")
	}
	if c.MTU > 0 {
		args = append(args, "mtu", strconv.Itoa(c.MTU))
	}
	args = append(args, "up")
	if out, err := exec.Command("ifconfig", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ifsetup: ifconfig %v: %v: %s", args, err, out)
	}
	if c.Addr.IsValid() {
		if out, err := exec.Command("route", "-q", "-n", "add", "-net", c.Addr.Masked().String(), "-interface", c.Name).CombinedOutput(); err != nil {
			return fmt.Errorf("ifsetup: route: %v: %s", err, out)
		}
	}
	for _, p := range c.Routes {
		if out, err := exec.Command("route", "-q", "-n", "add", "-net", p.String(), "-interface", c.Name).CombinedOutput(); err != nil {
			return fmt.Errorf("ifsetup: route %v: %v: %s", p, err, out)
		}
	}
	if c.DefaultRoute {
		for _, half := range []string{"0.0.0.0/1", "128.0.0.0/1"} { // beats the existing default without replacing it
			if out, err := exec.Command("route", "-q", "-n", "add", "-net", half, "-interface", c.Name).CombinedOutput(); err != nil {
				return fmt.Errorf("ifsetup: route %s: %v: %s", half, err, out)
			}
		}
	}
	return nil
}
