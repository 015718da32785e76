// Package text is what every job's human report is written with: a writer
// that keeps the first error, so a report of fifty lines checks it once, and
// the small words the reports share.
package text

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Writer writes to W and keeps the first write error; later writes do
// nothing. It is an io.Writer, so a tabwriter can sit on it.
type Writer struct {
	W   io.Writer
	Err error
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.Err != nil {
		return 0, w.Err
	}
	n, err := w.W.Write(p)
	w.Err = err
	return n, err
}

// Printf formats to W unless an earlier write failed.
func (w *Writer) Printf(format string, a ...any) { fmt.Fprintf(w, format, a...) }

// Plural returns one for n == 1 and many otherwise.
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Count writes x rounded to a whole number with thousands separated by
// commas: 600000 is "600,000".
func Count(x float64) string {
	s := strconv.FormatFloat(math.Round(math.Abs(x)), 'f', 0, 64)
	var b strings.Builder
	if x <= -0.5 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
