package bench

import (
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var rerender = flag.String("rerender", "", "rewrite results/latest.{md,svg} and README.md's tables from this JSON of a run")

// TestRerender renders a stored run again, for a change to the report's
// layout without measuring anew:
//
//	go test ./bench/ -run Rerender -rerender results/latest.json
func TestRerender(t *testing.T) {
	if *rerender == "" {
		t.Skip("no -rerender file given")
	}
	js, err := os.ReadFile(*rerender)
	if err != nil {
		t.Fatal(err)
	}
	var r Run
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}
	written, err := WriteResults(".", r, false, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %v", written)
}
