// Package keepalive probes an SSH connection with keepalive@openssh.com
// requests, as ssh's ServerAliveInterval and sshd's ClientAliveInterval do,
// and closes it when the peer stops answering: a VPN has to notice a dead
// peer to free its tunnel or to reconnect. Both the gateway and the client
// use it.
package keepalive
