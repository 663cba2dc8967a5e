package relay

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	th := NewThrottle(time.Hour)
	if _, ok := th.Allow("spoofed"); !ok {
		t.Fatal("the first event was held back")
	}
	for range 1000 {
		if _, ok := th.Allow("spoofed"); ok {
			t.Fatal("an event within the interval got through")
		}
	}
	if _, ok := th.Allow("other"); !ok {
		t.Fatal("another kind was held back by the first")
	}
	th.last["spoofed"].at = time.Now().Add(-2 * time.Hour)
	n, ok := th.Allow("spoofed")
	if !ok || n != 1000 {
		t.Fatalf("after the interval: %d, %v; want the 1000 held back", n, ok)
	}
}
