package watertun

import "github.com/songgao/water"

// setName picks the TAP-Windows adapter by its friendly name; water's
// defaults supply the driver's component ID (tap0901) and a network.
func setName(c *water.Config, name string) {
	c.ComponentID = "tap0901"
	c.Network = "198.18.0.10/24"
	c.InterfaceName = name
}

func setNetwork(c *water.Config, cidr string) { c.Network = cidr }

// setMTU leaves the adapter's MTU alone: water has no way to set it.
func setMTU(string, int) error { return nil }
