// Package archtest holds no code: its test checks that the import graph has
// the shape the design needs (README, "Layout"), so that an arrow the wrong
// way fails CI instead of creeping in.
package archtest
