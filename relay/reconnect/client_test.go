package reconnect

import (
	"testing"
	"time"
)

func TestBackoffIsCappedAndJittered(t *testing.T) {
	for n := range 40 {
		d := backoff(n)
		want := min(maxBackoff, minBackoff<<min(n, 16))
		if d < want/2 || d > want {
			t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
		}
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[backoff(5)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("backoff is not jittered: %v", seen)
	}
}
