package container

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestDatagramConn(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("u"), 0xffff)
	tests := []struct {
		name string
		sent [][]byte
		buf  int
		want [][]byte
	}{
		{"several", [][]byte{[]byte("one"), []byte("two"), []byte("three")}, 100, [][]byte{[]byte("one"), []byte("two"), []byte("three")}},
		{"empty", [][]byte{{}, []byte("after")}, 100, [][]byte{{}, []byte("after")}},
		{"largest", [][]byte{big}, len(big), [][]byte{big}},
		{"cut to the buffer", [][]byte{[]byte("longer than four"), []byte("next")}, 4, [][]byte{[]byte("long"), []byte("next")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			w, r := &DatagramConn{Conn: a}, &DatagramConn{Conn: b}
			go func() {
				for _, d := range tt.sent {
					if _, err := w.Write(d); err != nil {
						return
					}
				}
			}()
			for _, want := range tt.want {
				buf := make([]byte, tt.buf)
				n, err := r.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Errorf("read %d bytes %.20q, want %d bytes %.20q", n, buf[:n], len(want), want)
				}
			}
		})
	}
	t.Run("too long", func(t *testing.T) {
		t.Parallel()
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if _, err := (&DatagramConn{Conn: a}).Write(make([]byte, 0x10000)); err == nil {
			t.Error("a datagram of 65536 bytes was written")
		}
	})
}

// A deadline that ends a Read mid-frame loses nothing; the end of the
// stream mid-frame is an unexpected one.
func TestDatagramConnPartialFrame(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer b.Close()
	r := &DatagramConn{Conn: b}
	go a.Write([]byte{0, 5, 'h', 'e'})
	b.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 10)
	if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of half a frame: %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})
	go func() {
		a.Write([]byte("llo"))
		a.Write([]byte{0})
		a.Close()
	}()
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf[:n], err)
	}
	if _, err := r.Read(buf); err != io.ErrUnexpectedEOF {
		t.Fatalf("read at the end mid-header: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}
