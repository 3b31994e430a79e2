package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
)

// templateFuncs are the functions Docker's --format templates offer.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, l, r int) string {
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
}

func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("parse --format template: %w", err)
	}
	return t, nil
}

// rowWriter prints rows as a table with a header, as Go templates (with an
// optional "table" prefix for a header) or as JSON lines, as Docker does.
type rowWriter struct {
	w       io.Writer
	tw      *tabwriter.Writer
	tmpl    *template.Template
	json    bool
	headers map[string]string
}

// newRowWriter prepares output for format; def is the default table format.
// headers names the column of each field for table headers.
func newRowWriter(w io.Writer, format, def string, headers map[string]string) (*rowWriter, error) {
	rw := &rowWriter{w: w, headers: headers}
	if format == "json" {
		rw.json = true
		return rw, nil
	}
	table := false
	switch {
	case format == "" || format == "table":
		format, table = def, true
	case strings.HasPrefix(format, "table "):
		format, table = strings.TrimPrefix(format, "table "), true
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := parseTemplate(format + "\n")
	if err != nil {
		return nil, err
	}
	rw.tmpl = t
	if table {
		rw.tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		if err := t.Execute(rw.tw, headers); err != nil {
			return nil, fmt.Errorf("run --format template: %w", err)
		}
	}
	return rw, nil
}

func (rw *rowWriter) Row(v any) error {
	if rw.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(rw.w, "%s\n", b)
		return err
	}
	var out io.Writer = rw.w
	if rw.tw != nil {
		out = rw.tw
	}
	if err := rw.tmpl.Execute(out, v); err != nil {
		return fmt.Errorf("run --format template: %w", err)
	}
	return nil
}

func (rw *rowWriter) Flush() error {
	if rw.tw != nil {
		return rw.tw.Flush()
	}
	return nil
}

// headersOf maps each field of a row type to its Docker-style column name,
// overridden by special.
func headersOf(row any, special map[string]string) map[string]string {
	h := map[string]string{}
	t := reflect.TypeOf(row)
	for i := 0; i < t.NumField(); i++ {
		n := t.Field(i).Name
		h[n] = strings.ToUpper(n)
	}
	for k, v := range special {
		h[k] = v
	}
	return h
}

// writeTemplate renders v with a --format template, one result a line.
func writeTemplate(w io.Writer, format string, v any) error {
	t, err := parseTemplate(format)
	if err != nil {
		return err
	}
	if err := t.Execute(w, v); err != nil {
		return fmt.Errorf("run --format template: %w", err)
	}
	_, err = fmt.Fprintln(w)
	return err
}

// since formats a time as Docker does: "2 hours ago".
func since(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return units.HumanDuration(time.Now().UTC().Sub(t)) + " ago"
}

// humanSize formats a size as Docker does: "4.26MB".
func humanSize(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// dockerTime formats a time as Docker's CreatedAt columns do.
func dockerTime(t time.Time) string {
	return t.Format("2006-01-02 15:04:05 -0700 MST")
}
