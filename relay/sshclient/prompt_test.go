package sshclient

import (
	"bufio"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// A prompt in progress ends when Done closes, and the terminal is put
// back at once: the first Ctrl-C must not wait for an answer, nor leave
// echo off.
func TestPromptEndsOnDone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan struct{})
	tty := &TTY{Out: io.Discard, Done: done}
	restored := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := tty.read(r, func() (string, error) {
			return bufio.NewReader(r).ReadString('\n') // never answered
		}, func() { close(restored) })
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(done)
	select {
	case err := <-got:
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("read = %v, want ErrInterrupted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the prompt still waits after Done closed")
	}
	select {
	case <-restored:
	default:
		t.Error("the terminal was not restored")
	}

	// Answered: the line, with no interruption.
	r2, w2, _ := os.Pipe()
	defer w2.Close()
	tty.Done = make(chan struct{})
	w2.WriteString("yes\n")
	line, err := tty.read(r2, func() (string, error) { return bufio.NewReader(r2).ReadString('\n') }, func() {})
	if err != nil || line != "yes\n" {
		t.Fatalf("read = %q, %v", line, err)
	}
}
