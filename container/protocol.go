package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// CLI ↔ agent, at start: the CLI passes the agent two descriptors.
//
//   - a status pipe (agent → CLI): exactly one JSON Started message once the
//     container's command was exec'd, or failed to be.
//   - with attach, one end of a socket pair that carries Frames both ways:
//     stdin, resize and close from the CLI; stdout, stderr and finally exit
//     from the agent.
//
// CLI ↔ agent, later: the control socket <runroot>/<id>/ctl.sock takes one
// JSON Request per connection and answers one JSON Reply.
//
// agent ↔ init: the agent passes init a JSON InitSpec on a pipe (fd 3), and an
// exec-status pipe (fd 4) that init closes by exec'ing (success) or writes one
// JSON ExecError to; with a terminal, a socket (fd 5) over which init sends
// the pty master with SCM_RIGHTS; with a single id mapped or published TCP
// ports to hand over, a socket (the descriptor InitSpec.NotifySocket names)
// over which init sends the listener of its seccomp filter for the chown
// family and bind, with SCM_RIGHTS, before it execs (chown_linux.go,
// bind_linux.go). exec's process does the same. Where the agent starts the
// command itself (direct_linux.go) there is no init, and none of this: the
// thread that forks the command keeps the pty master and the listener.

// Started is the agent's report on starting a container.
type Started struct {
	Pid int `json:"pid,omitempty"`
	// Error, when set, says why the command did not start; Code is then the
	// exit status roost exits with (125, 126 or 127).
	Error string `json:"error,omitempty"`
	Code  int    `json:"code,omitempty"`
}

// ExecError is init's report that it could not run the command.
type ExecError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// Request is a control-socket request.
type Request struct {
	// Op is "kill" (send Signal), "stop" (Signal, then SIGKILL after
	// Timeout seconds), "pause", "unpause", "procs" (list the processes),
	// "exec" (run Exec in the container; after the Reply the connection
	// carries Frames as an attach stream does, ending with the exit status),
	// "attach" (after the Reply, an attach stream of the container) or
	// "dial" (connect to Addr over Network inside the container's network
	// namespace; after an empty Reply the connection carries that
	// connection's bytes both ways: a --link; for Network "udp" each
	// datagram crosses as a DatagramConn frame) or "spawn" (start the agent
	// of a container that joins this one's network namespace: Agent is
	// its AgentSpec; a byte with its descriptors follows the request).
	Op      string    `json:"op"`
	Signal  int       `json:"signal,omitempty"`
	Timeout int       `json:"timeout,omitempty"`
	Exec    *ExecSpec `json:"exec,omitempty"`
	Network string    `json:"network,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Agent   string    `json:"agent,omitempty"`
}

// ExecSpec is one `exec`.
type ExecSpec struct {
	Args []string
	// Env is added to the container's environment.
	Env []string
	// User and Workdir, when set, replace the container's.
	User    string
	Workdir string
	Tty     bool
	Stdin   bool
	Detach  bool
}

// Reply is the answer to a Request.
type Reply struct {
	Error string `json:"error,omitempty"`
	// Procs answers "procs": the container's processes.
	Procs []Proc `json:"procs,omitempty"`
	// Code is the exit status for an exec that could not start (126, 127).
	Code int `json:"code,omitempty"`
}

// Frame streams.
const (
	StreamStdin  = 0
	StreamStdout = 1
	StreamStderr = 2
	// StreamExit carries the container's exit status as 4 bytes, big endian.
	StreamExit = 3
	// StreamResize carries rows and columns, 2 bytes each, big endian.
	StreamResize = 4
	// StreamCloseStdin says the CLI's stdin reached its end.
	StreamCloseStdin = 5
)

// A frame is an 8-byte header — stream, three zero bytes, payload length
// (big endian uint32) — and the payload, as Docker's attach streams.

const maxFrame = 1 << 20

// FrameWriter writes frames; it is safe for concurrent use.
type FrameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewFrameWriter returns a FrameWriter on w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// WriteFrame writes one frame (or several, for payloads over 1 MiB).
func (fw *FrameWriter) WriteFrame(stream byte, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for {
		n := len(p)
		if n > maxFrame {
			n = maxFrame
		}
		var hdr [8]byte
		hdr[0] = stream
		binary.BigEndian.PutUint32(hdr[4:], uint32(n))
		if _, err := fw.w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := fw.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// ReadFrame reads one frame from r into buf (grown as needed).
func ReadFrame(r io.Reader, buf []byte) (stream byte, payload []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("read frame: length %d over %d", n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// DatagramConn carries datagrams over a stream connection (a UDP flow over
// a "dial" connection): each crosses as its length, 2 bytes big endian, and
// its bytes. A Write sends one datagram whole (Writes may be concurrent); a
// Read returns one, cut to the buffer as UDP cuts it. A Read that ends
// mid-frame (a deadline) keeps what it read for the next Read.
type DatagramConn struct {
	net.Conn
	// The frame being read: its header, its body and how much of each.
	hdr         [2]byte
	body        []byte
	nhdr, nbody int
}

var _ net.Conn = (*DatagramConn)(nil)

// Read implements net.Conn.
func (c *DatagramConn) Read(p []byte) (int, error) {
	for c.nhdr < len(c.hdr) {
		n, err := c.Conn.Read(c.hdr[c.nhdr:])
		c.nhdr += n
		if err != nil && c.nhdr < len(c.hdr) {
			if err == io.EOF && c.nhdr > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	size := int(binary.BigEndian.Uint16(c.hdr[:]))
	if c.body == nil {
		c.body = make([]byte, 1<<16)
	}
	for c.nbody < size {
		n, err := c.Conn.Read(c.body[c.nbody:size])
		c.nbody += n
		if err != nil && c.nbody < size {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	c.nhdr, c.nbody = 0, 0
	return copy(p, c.body[:size]), nil
}

// Write implements net.Conn.
func (c *DatagramConn) Write(p []byte) (int, error) {
	if len(p) > 0xffff {
		return 0, fmt.Errorf("write datagram: length %d over %d", len(p), 0xffff)
	}
	b := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(b, uint16(len(p)))
	copy(b[2:], p)
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// frameStream adapts one stream of a FrameWriter to an io.Writer.
type frameStream struct {
	fw     *FrameWriter
	stream byte
}

func (s frameStream) Write(p []byte) (int, error) {
	if err := s.fw.WriteFrame(s.stream, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// readJSON reads one JSON message and its newline, and not a byte more: on
// a connection, frames may follow.
func readJSON(r io.Reader, v any) error {
	var line []byte
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
			if len(line) > 16<<20 {
				return errors.New("read message: too long")
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return json.Unmarshal(line, v)
}
