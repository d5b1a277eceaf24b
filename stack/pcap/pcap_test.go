package pcap

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	pkts := [][]byte{{0x45, 1, 2, 3}, {0x60, 9}, {}}
	at := time.Unix(1700000000, 123456000)
	for _, p := range pkts {
		if err := w.WritePacketAt(at, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range pkts {
		got, ts, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(got, want) || !ts.Equal(at) {
			t.Fatalf("packet %d = %x at %v, want %x at %v", i, got, ts, want, at)
		}
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("after last packet: %v, want EOF", err)
	}
}

func TestReaderRejects(t *testing.T) {
	if _, err := NewReader(bytes.NewReader([]byte("not a pcap at all, no no no"))); err == nil {
		t.Fatal("garbage accepted")
	}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	w.Flush()
	b := buf.Bytes()
	b[20] = 1 // Ethernet
	if _, err := NewReader(bytes.NewReader(b)); err == nil {
		t.Fatal("Ethernet capture accepted")
	}
}

func TestReadAll(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	w.WritePacket([]byte{0x45, 1})
	w.WritePacket([]byte{0x60, 2})
	w.Flush()
	got, err := ReadAll(bytes.NewReader(buf.Bytes()))
	if err != nil || len(got) != 2 || got[1][1] != 2 {
		t.Fatalf("ReadAll = %x, %v", got, err)
	}
	trunc := buf.Bytes()[:buf.Len()-1]
	if got, err := ReadAll(bytes.NewReader(trunc)); err == nil || len(got) != 1 {
		t.Fatalf("truncated capture: %d packets, %v; want 1 and an error", len(got), err)
	}
}
