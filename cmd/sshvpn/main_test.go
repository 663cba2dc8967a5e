package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// The first SIGINT starts the teardown; the second exits at once, as ssh
// does. The test runs itself as the child, whose teardown never ends, so
// only the second signal can end it.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if os.Getenv("SSHVPN_TEST_SIGNALS") == "1" {
		onSignals(func() { fmt.Println("tearing down") })
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalExitsAtOnce$")
	cmd.Env = append(os.Environ(), "SSHVPN_TEST_SIGNALS=1")
	var out relaytest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitOutput(t, &out, "ready")
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Process.Signal(syscall.SIGINT) // the same at once, as GNU timeout sends it twice: one request
	waitOutput(t, &out, "tearing down")
	time.Sleep(2 * sameSignal)
	if strings.Contains(out.String(), "again") {
		t.Fatalf("a signal repeated at once forced the exit:\n%s", out.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := errors.AsType[*exec.ExitError](err)
		if !ok || ee.ExitCode() != 128+int(syscall.SIGINT) || !strings.Contains(out.String(), "interrupt again: exiting now") {
			t.Fatalf("second SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("a second SIGINT did not end it:\n%s", out.String())
	}
}

func waitOutput(t *testing.T, out *relaytest.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from the child:\n%s", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
