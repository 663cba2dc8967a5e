package sshclient

import (
	"slices"
	"strings"
	"testing"
)

// Getopt turns ssh's forms into one flag per argument, as ssh's getopt
// reads them: glued values, clusters, a value in the next argument; ignored
// letters vanish, refused ones say what to use instead.
func TestGetopt(t *testing.T) {
	long := func(name string) bool { return name == "route" || name == "mtu" }
	for _, tt := range []struct {
		in   string
		want string
		err  string
	}{
		{in: "-p2222 -wany:0 -oUser=me host", want: "-p 2222 -w any:0 -o User=me host"},
		{in: "-NTf -vvv host", want: "-N -T -f -v -v -v host"},
		{in: "-Ai id -e ~ -tx host", want: "-i id host"},
		{in: "-lroot -4 host --route 10.0.0.0/8 -mtu=1400", want: "-l root -4 host --route 10.0.0.0/8 -mtu=1400"},
		{in: "host -- -p 1", want: "host -- -p 1"},
		{in: "-R 8080:x:80 host", err: "run ssh -R beside it"},
		{in: "-gL8080:x:80 -D1080 host", want: "-g -L 8080:x:80 -D 1080 host"},
		{in: "-C host", err: "does not compress"},
		{in: "-p", err: "option -p needs an argument"},
		{in: "-Z host", err: "unknown option -Z"},
	} {
		got, err := Getopt(strings.Fields(tt.in), long)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, %v; want an error saying %q", tt.in, got, err, tt.err)
			}
		case err != nil || !slices.Equal(got, strings.Fields(tt.want)):
			t.Errorf("%q: %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
