package container

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// LogEntry is one line of ctr.log, as Docker's json-file driver writes it.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logWriter appends a container's output to its log: one entry a line,
// partial lines kept until their newline (or 16 KiB, as Docker splits).
type logWriter struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	enc     *json.Encoder
	partial map[string][]byte
}

const maxLogLine = 16 << 10

func openLog(p string) (*logWriter, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	return &logWriter{f: f, w: w, enc: json.NewEncoder(w), partial: map[string][]byte{}}, nil
}

// write logs a chunk of a stream and flushes, so that `logs -f` sees it.
func (l *logWriter) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UTC()
	buf := append(l.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if len(buf) < maxLogLine {
				break
			}
			i = maxLogLine - 1
		}
		l.enc.Encode(LogEntry{Log: string(buf[:i+1]), Stream: stream, Time: now})
		buf = buf[i+1:]
	}
	l.partial[stream] = append(l.partial[stream][:0], buf...)
	l.w.Flush()
}

func (l *logWriter) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for stream, buf := range l.partial {
		if len(buf) > 0 {
			l.enc.Encode(LogEntry{Log: string(buf), Stream: stream, Time: time.Now().UTC()})
		}
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// LogOptions select what ReadLogs returns.
type LogOptions struct {
	// Follow keeps reading until the container stops.
	Follow bool
	// Tail, when >= 0, starts that many lines before the end.
	Tail         int
	Since, Until time.Time
}

// ReadLogs calls fn for each log entry of c. With Follow it returns once the
// container's agent is gone and the log is read to its end, or when stop is
// closed.
func (s *Store) ReadLogs(c *Container, o LogOptions, stop <-chan struct{}, fn func(LogEntry) error) error {
	f, err := os.Open(c.Dir + "/ctr.log")
	if errors.Is(err, os.ErrNotExist) {
		if !o.Follow {
			return nil
		}
		for !fileExists(c.Dir+"/ctr.log") && c.IsActive() {
			select {
			case <-stop:
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
		f, err = os.Open(c.Dir + "/ctr.log")
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if err != nil {
		return err
	}
	defer f.Close()
	emit := func(e LogEntry) error {
		if !o.Since.IsZero() && e.Time.Before(o.Since) {
			return nil
		}
		if !o.Until.IsZero() && e.Time.After(o.Until) {
			return nil
		}
		return fn(e)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	if o.Tail >= 0 {
		var last []LogEntry
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				var e LogEntry
				if json.Unmarshal(line, &e) == nil {
					last = append(last, e)
					if len(last) > o.Tail {
						last = last[1:]
					}
				}
			} else if len(line) > 0 {
				f.Seek(-int64(len(line)), io.SeekCurrent)
				r.Reset(f)
			}
			if err != nil {
				break
			}
		}
		for _, e := range last {
			if err := emit(e); err != nil {
				return err
			}
		}
	}
	var pending []byte
	for {
		line, err := r.ReadBytes('\n')
		pending = append(pending, line...)
		if len(pending) > 0 && pending[len(pending)-1] == '\n' {
			var e LogEntry
			if json.Unmarshal(pending, &e) == nil {
				if err := emit(e); err != nil {
					return err
				}
			}
			pending = pending[:0]
		}
		if err == nil {
			continue
		}
		if err != io.EOF {
			return err
		}
		if !o.Follow {
			return nil
		}
		active := c.IsActive()
		if !active {
			// Read what the agent wrote before it went.
			rest, _ := io.ReadAll(r)
			for _, line := range bytes.SplitAfter(append(pending, rest...), []byte("\n")) {
				var e LogEntry
				if len(line) > 0 && json.Unmarshal(line, &e) == nil {
					if err := emit(e); err != nil {
						return err
					}
				}
			}
			return nil
		}
		select {
		case <-stop:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
