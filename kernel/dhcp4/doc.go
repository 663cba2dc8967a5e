// Package dhcp4 keeps a DHCPv4 lease on one interface, as a host on a LAN
// does (RFC 2131): it asks for one (DISCOVER, OFFER, REQUEST, ACK), renews
// it at T1 with the server that granted it, rebinds at T2 with any server,
// starts over when it is lost, and gives it back when told. insomniacslk's
// nclient4 builds and matches the messages, on a packet socket of the
// package's own (see conn). What a lease does to the host is the caller's.
// It runs on Linux, where the packet socket is.
package dhcp4
