package ruleset

import "fmt"

// ParseError is a dump that could not be read: which file, which line, what.
type ParseError struct {
	File string // name of the dump ("" for unnamed input)
	Line int    // 1-based line number, 0 when the error is not tied to a line
	Msg  string
	Err  error // underlying error, if any
}

func (e *ParseError) Error() string {
	where := e.File
	if where == "" {
		where = "input"
	}
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", where, e.Line)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", where, e.Msg, e.Err)
	}
	return fmt.Sprintf("%s: %s", where, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }
