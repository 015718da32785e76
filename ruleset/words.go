package ruleset

import (
	"errors"
	"strings"
)

// splitWords splits an iptables-save rule line into words the way
// iptables-restore does: blanks separate words, double quotes group them, and
// inside quotes a backslash escapes the next character. dst is reused to
// avoid an allocation per line.
func splitWords(dst []string, line string) ([]string, error) {
	dst = dst[:0]
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			return dst, nil
		}
		if line[i] != '"' {
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' {
				if line[j] == '"' {
					return dst, errors.New("quote inside a word")
				}
				j++
			}
			dst = append(dst, line[i:j])
			i = j
			continue
		}
		// Quoted word: find the closing quote, unescaping only when needed.
		j := i + 1
		escaped := false
		for j < len(line) && line[j] != '"' {
			if line[j] == '\\' {
				escaped = true
				j++
			}
			j++
		}
		if j >= len(line) {
			return dst, errors.New("unterminated quote")
		}
		w := line[i+1 : j]
		if escaped {
			var b strings.Builder
			for k := 0; k < len(w); k++ {
				if w[k] == '\\' && k+1 < len(w) {
					k++
				}
				b.WriteByte(w[k])
			}
			w = b.String()
		}
		dst = append(dst, w)
		i = j + 1
		if i < len(line) && line[i] != ' ' && line[i] != '\t' {
			return dst, errors.New("text right after a closing quote")
		}
	}
}

// quoteWord quotes w for an iptables command line when it needs it.
func quoteWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"\\'") {
		return w
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
}
