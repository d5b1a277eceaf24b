//go:build !linux && !darwin && !windows

package ifsetup

func up(Config) error { return ErrUnsupported }
