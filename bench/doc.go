// Package bench is the reproducible throughput comparison between stock
// OpenSSH tunnels (`ssh -w` into sshd with PermitTunnel yes) and sshvpn on
// either end: `sshvpn serve` with the kernel backend under the same stock
// `ssh -w` client, and `sshvpn connect` as the client of the same stock sshd.
//
// BenchmarkTunnel, behind the integration build tag, builds two network
// namespaces per OpenSSH generation (Debian's 9.2 and the 10.0 that
// .ci/openssh10 unpacks): a client and a server joined by a veth pair on
// 198.18.1.0/24, with a point-to-point tunnel between them carrying
// 198.18.3.1 (server side) and 198.18.3.2 (client side) at MTU 1500. Through
// each tunnel it runs iperf3 TCP for 5 seconds, client to server (upload) and
// server to client (download, iperf3 -R), and reports per sub-benchmark
//
//	OpenSSH_<v>/ssh-w/{upload,download}           Mbit/s
//	OpenSSH_<v>/sshvpn/{upload,download}          Mbit/s and x-ssh-w, the ratio
//	                                              to the ssh -w figure of the
//	                                              same run
//	OpenSSH_<v>/sshvpn-connect/{upload,download}  the same, for sshvpn connect
//	                                              (-w any:0 --address
//	                                              198.18.3.2/24) into the
//	                                              baseline's sshd
//
// along with iperf3's retransmits and the CPU the tunnel's processes used on
// each side. The goodput is iperf3's end.sum_received.bits_per_second.
//
// The tunnels:
//
//   - ssh-w: stock ssh -w 0:0 into stock sshd with PermitTunnel yes; sshd
//     creates its tun0 when the channel opens and both tun0 are configured by
//     hand.
//   - sshvpn: stock ssh -w 0:any into sshvpn serve, which configures its own
//     tun0; the client's is configured by hand.
//   - sshvpn-connect: sshvpn connect into the ssh-w server, configured the
//     same way; the client configures its own tun0. Each client keeps its
//     default cipher preference, so this row's cipher may differ from the
//     ssh-w row's (x/crypto/ssh prefers AES-GCM, OpenSSH chacha20-poly1305);
//     the cipher column shows what was negotiated, read from sshd's log.
//
// Every tunnel answers ping before iperf3 runs, and a sshvpn connect that
// reconnects during a run fails the benchmark.
//
// The machines this runs on are shared and noisy and iperf3 competes with the
// tunnel for the same CPUs, so absolute Mbit/s vary from run to run; compare
// the ratios.
//
// It needs root (namespaces, tun devices, sshd), iperf3, and OpenSSH. Run:
//
//	make bench
//
// or only this harness:
//
//	go test -tags integration -run '^$' -bench . -benchtime 1x -timeout 20m ./bench/
//
// Every process is killed by PID and every namespace deleted when its
// sub-benchmark ends (internal/nstest), also on failure.
package bench
