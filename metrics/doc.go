// Package metrics renders a status.Report as Prometheus text exposition
// format 0.0.4, the page `--metrics-listen` serves on /metrics. Every
// scrape renders one Report taken at that moment, the same snapshot
// `sshvpn status` prints, so the two never disagree.
//
// It is a small writer of its own rather than prometheus/client_golang: the
// data is already one snapshot, and client_golang would add a registry,
// collectors kept in step with the Report and a tree of dependencies for
// what is a page of text formatting. The tests hold the output to the
// ecosystem's own parser and linter.
//
//   - text.go: the exposition format: families, samples, escaping.
//   - write.go: Write, which metric comes from which field of a Report.
//   - build.go: sshvpn_build_info's labels, from the binary's build info.
//   - handler.go: Handler, /metrics and a short index on /.
//
// Label values come from fixed sets (tunnel modes, directions, drop and
// refusal reasons, proxy kinds): no series is per flow, connection, user or
// address, so a gateway's series stay few however many clients it holds.
package metrics
