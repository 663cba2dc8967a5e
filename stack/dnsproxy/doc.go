// Package dnsproxy is the rootless gateway's DNS forwarder: a caching proxy
// that answers tunnel clients on the gateway's virtual address and forwards
// to the host's own resolvers over ordinary sockets of the gateway process.
//
// The gVisor stack hands it a net.PacketConn (UDP) and a net.Listener (TCP)
// bound to the virtual address; [Proxy.ServePacket] and [Proxy.ServeStream]
// serve them. Queries go to the first upstream, then the next on a timeout,
// an error, SERVFAIL or REFUSED; over UDP with EDNS0 (a 1232-byte buffer, the
// DNS flag day 2020 figure) and again over TCP when the answer comes back
// truncated. UDP clients get an answer trimmed to the size they advertise
// (512 bytes without EDNS0, RFC 1035 §4.2.1) with TC set when it did not fit,
// so they retry over TCP (RFC 7766); TCP clients get the whole answer.
//
// Answers are cached no longer than their smallest TTL, negative answers no
// longer than their SOA's minimum (RFC 2308 §5), and the TTLs a cached answer
// carries count down. The cache is bounded in bytes (Config.CacheBytes), and
// each client, one [Proxy.Share] each, may hold only its share of it
// (Config.ShareBytes): a client filling the cache pushes out its own answers
// before anyone else's. Expired answers are freed by a timer, not only when
// looked up. An answer is cached packed, and a hit is one copy of its bytes
// with the client's ID, flags, name and TTLs written in.
//
// A share may be given an [Admit]: the gateway judges each client's queries
// by its egress policy, and a client it may not serve gets REFUSED.
//
// Files:
//
//	proxy.go      Config, defaults and limits, Proxy, Share, Admit, Stats
//	serve.go      the UDP and TCP serving loops and their limits
//	handle.go     one query: checks, the cache, upstream, packing the reply
//	forward.go    asking the upstream resolvers
//	cache.go      the byte-bounded cache: accounts, eviction, expiry
//	answer.go     an answer in packed form and the replies written from it
//	upstreams.go  reading the resolvers from resolv.conf
package dnsproxy
