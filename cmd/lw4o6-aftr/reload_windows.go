package main

import "errors"

// signalReload: Windows has no SIGHUP.
func signalReload(int) error { return errors.New("reload needs SIGHUP, which Windows lacks") }
