//go:build !linux && !darwin && !windows

package watertun

import "github.com/songgao/water"

// water has no TUN on this system: water.New fails with its own error.
func setName(*water.Config, string)    {}
func setNetwork(*water.Config, string) {}
func setMTU(string, int) error         { return nil }
