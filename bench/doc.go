// Package bench is sshvpn's reproducible comparison harness: iperf3 TCP,
// ping and the tunnel processes' CPU and memory, through stock OpenSSH
// tunnels and SOCKS proxies (ssh -D), sshuttle, sshvpn in every pairing
// with stock peers and with itself, and the two ceilings (the bare path,
// and one x/crypto/ssh channel), in network namespaces on 198.18.0.0/15.
// README.md beside this file says how to run it, what each row means and
// shows the latest figures.
//
// The pieces:
//
//   - bench_test.go (integration tag): BenchmarkPaths, the plan (BENCH=
//     default, quick, full) and the runner, which interleaves rounds;
//   - configs_test.go: one start function per configuration, returning a
//     path (the client host, the iperf3 and ping targets, how to restart
//     its client, how to tell it died); configs_socks_test.go those of the
//     rootless client's SOCKS rows;
//   - topo_test.go: the three hosts each configuration gets (client ⇄
//     gateway ⇄ LAN, the underlay a veth or delaylink) and softTB, which
//     turns a configuration's Fatal into that row's error;
//   - measure_test.go: iperf3, ping, CPU and RSS from /proc, time to the
//     first packet;
//   - sweep_test.go (integration tag): BenchmarkSweep, the loss sweep:
//     1, 32 and 128 parallel downloads through raw, sshuttle and sshvpn's
//     transports (packet, flow, auto) on every profile; flows.go reads
//     iperf3's per-stream JSON into a FlowSample (aggregate, slowest flow,
//     longest stall) and sweep.go renders the sweep and checks its floors,
//     unit-tested by flows_test.go and sweep_report_test.go;
//   - report.go and chart.go: pure functions from a Run to markdown, JSON
//     and SVG, unit-tested without root by report_test.go; results.go
//     writes them under results/ and into README.md (rerender_test.go
//     does it again from a stored JSON);
//   - sshchannel/: the x/crypto/ssh channel helper of the ssh-channel row;
//   - socksfwd/: the adapter that carries iperf3's connections through a
//     SOCKS5 proxy, for the SOCKS rows;
//   - delaylink/: the userspace delay-and-loss link of the 40 ms profiles.
package bench
