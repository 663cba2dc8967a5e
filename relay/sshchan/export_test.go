package sshchan

// WindowState is what a Channel's sender knows of its peer's window, for
// the tests of package sshchan_test.
type WindowState struct {
	Charge            int32  // per datagram beyond its length
	Settled           bool   // the charge is final
	Adjusts, CapWaits uint64 // window increases seen; writes that waited on the cap
	Lifted            bool   // the cap is off until small adjusts restore it
}

func WindowStateOf(c *Channel) WindowState {
	w := c.shim.win
	w.L.Lock()
	defer w.L.Unlock()
	s := &c.shim.send
	return WindowState{Charge: s.charge, Settled: s.settled(), Adjusts: s.adjusts, CapWaits: s.capWaits, Lifted: s.lifted}
}
