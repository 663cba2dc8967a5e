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

// Reads is how often the file was parsed.
func (a *AuthorizedKeys) Reads() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reads
}
