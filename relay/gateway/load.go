package gateway

// Load is what the gateway carries at one moment.
type Load struct {
	Connections int // logged in
	Tunnels     int // open tunnels, over every connection
}

// Load counts what the clients hold now from the per-key counts the
// limits keep anyway, so it costs one lock and a walk over the keys.
// It takes the lock every accept, login and channel open takes: a caller
// that gets an answer knows that lock is not stuck, which is what serve's
// watchdog asks.
func (s *Server) Load() Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l Load
	for _, u := range s.keys {
		l.Connections += u[keyConns]
		l.Tunnels += u[keyTunnels]
	}
	return l
}
