package gateway

// ChannelsInUse is how many tunnel and session channels all connections
// hold, counted as the per-connection limit counts them.
func (s *Server) ChannelsInUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, cs := range s.conns {
		if cs != nil {
			cs.mu.Lock()
			n += cs.channels
			cs.mu.Unlock()
		}
	}
	return n
}
