package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcap"
)

// Documentation addresses only (RFC 3849, RFC 5737).
const checkConf = `softwire-config {
  binding-table {
    softwire { ipv4 192.0.2.1; psid 0; b4-ipv6 2001:db8:a::1; br-address 2001:db8::1; port-set { psid-length 0; } }
  }
  instance { device t; queue { id 0;
    external-interface { ip 198.51.100.1; next-hop { mac 02:00:00:00:00:01; } }
    internal-interface { ip 2001:db8::1; next-hop { mac 02:00:00:00:00:02; } } } }
}
`

func writePcap(t *testing.T, path string, pkts ...[]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacketAt(time.Unix(1, 0), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := pcap.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// `check` replays a capture through the data plane: a packet from the
// Internet to the bound address comes out of the IPv6 side, encapsulated
// (hop limit 64 by default, 255 with --profile snabb); the IPv4 side
// emits nothing and its capture is empty.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.conf")
	if err := os.WriteFile(conf, []byte(checkConf), 0o644); err != nil {
		t.Fatal(err)
	}
	in4 := filepath.Join(dir, "in4.pcap")
	pkt := packet.AppendUDP4(nil, 0, [4]byte{203, 0, 113, 10}, [4]byte{192, 0, 2, 1}, 53, 4000, 64, []byte("answer"))
	writePcap(t, in4, pkt)
	for _, c := range []struct {
		profile string
		hop     byte
	}{{"rfc", 64}, {"snabb", 255}} {
		out4, out6 := filepath.Join(dir, "o4.pcap"), filepath.Join(dir, "o6.pcap")
		var stdout, stderr bytes.Buffer
		code := run([]string{"check", "--conf", conf, "--in4", in4, "--out4", out4, "--out6", out6, "--profile", c.profile, "--counters"}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if got := readPcap(t, out4); len(got) != 0 {
			t.Errorf("IPv4 side emitted %d packets", len(got))
		}
		got := readPcap(t, out6)
		if len(got) != 1 || len(got[0]) != 40+len(pkt) || got[0][7] != c.hop || got[0][6] != packet.ProtoIPIP {
			t.Fatalf("%s: IPv6 side: % x", c.profile, got)
		}
		if !strings.Contains(stdout.String(), "out-ipv6-packets 1\n") {
			t.Errorf("counters:\n%s", stdout.String())
		}
	}
}

func TestCheckUsage(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.conf")
	os.WriteFile(conf, []byte(checkConf), 0o644)
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte(strings.Replace(checkConf, "psid-length 0", "psid-length 17", 1)), 0o644)
	o4, o6 := filepath.Join(dir, "o4"), filepath.Join(dir, "o6")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"check", "--help"}, 0, "Replays captures"},
		{[]string{"check", "--out4", o4, "--out6", o6}, 2, "--conf is required"},
		{[]string{"check", "--conf", conf}, 2, "--out4 and --out6"},
		{[]string{"check", "--conf", conf, "--out4", o4, "--out6", o6, "--profile", "x"}, 2, "--profile"},
		{[]string{"check", "--conf", bad, "--out4", o4, "--out6", o6}, 1, "bad.conf:3:"},
		{[]string{"check", "--conf", conf, "--in4", conf, "--out4", o4, "--out6", o6}, 1, "IPv4-side input"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args[1:], code, stderr.String(), c.code, c.msg)
		}
	}
}
