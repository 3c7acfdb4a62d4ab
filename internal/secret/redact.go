package secret

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strings"
)

// Redacted stands where Redact took a secret out.
const Redacted = "[redacted]"

// Redact takes every secret out of text, in the forms a server may echo
// it: as it is, as an IMAP quoted string (\ and " escaped), URL-encoded
// (a server whose logons go to a web service may echo its form), and in
// base64 (standard or URL-safe, at any alignment, as inside the AUTHENTICATE
// PLAIN or XOAUTH2 response it was sent in). As it is and quoted, it is
// taken out in any case (some servers upper-case the line they refuse),
// and so is its start, from 4 bytes on (some cut the line they echo). A
// base64 word that decodes to bytes holding the secret, at any alignment,
// is taken out whole, however short the secret; the parts of a longer
// secret that a cut-off base64 word still holds are taken out with the
// characters around them that also encode their bits.
func Redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		text = base64Word.ReplaceAllStringFunc(text, func(w string) string {
			if decodesTo(w, s) {
				return Redacted
			}
			return w
		})
		forms := []string{s, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s), url.QueryEscape(s), url.PathEscape(s)}
		for _, form := range forms {
			text = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(form)).ReplaceAllLiteralString(text, Redacted)
		}
		text = redactStarts(text, forms...)
		if re := base64Forms(s); re != nil {
			text = re.ReplaceAllString(text, Redacted)
		}
	}
	return text
}

// base64Forms matches s inside any base64 text: the groups of 4
// characters that encode only bytes of s, at each of the 3 alignments s
// may start at, with the up to 3 characters either side that mix its
// bits with its neighbours'.
func base64Forms(s string) *regexp.Regexp {
	var alts []string
	for skip := range 3 {
		if len(s)-skip < 3 {
			continue
		}
		core := s[skip : skip+(len(s)-skip)/3*3]
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			alts = append(alts, regexp.QuoteMeta(enc.EncodeToString([]byte(core))))
		}
	}
	if len(alts) == 0 {
		return nil
	}
	return regexp.MustCompile(`[A-Za-z0-9+/_-]{0,3}(?:` + strings.Join(alts, "|") + `)[A-Za-z0-9+/_=-]{0,4}`)
}

// base64Word is a word of base64, standard or URL-safe, with its padding.
var base64Word = regexp.MustCompile(`[A-Za-z0-9+/_-]{2,}=*`)

// decodesTo reports whether the base64 word w, read from any of its first
// four characters (the secret's bytes may start at any alignment, and a
// server may cut the word anywhere), decodes to bytes holding s.
func decodesTo(w, s string) bool {
	w = strings.NewReplacer("-", "+", "_", "/").Replace(strings.TrimRight(w, "="))
	for off := 0; off < 4 && off < len(w); off++ {
		seg := w[off:]
		if len(seg)%4 == 1 {
			seg = seg[:len(seg)-1]
		}
		if dec, err := base64.RawStdEncoding.DecodeString(seg); err == nil && strings.Contains(string(dec), s) {
			return true
		}
	}
	return false
}

// minStart is the shortest start of a secret that redactStarts takes out.
const minStart = 4

// redactStarts takes out of text every run of at least minStart bytes
// (all of a form, if shorter) that one of forms starts with, in any ASCII
// case, the longest where they overlap (a secret's start is the start of
// its URL-encoded form too): what an echo cut short leaves of a secret.
func redactStarts(text string, forms ...string) string {
	lt := asciiLower(text)
	lfs := make([]string, len(forms))
	for i, f := range forms {
		lfs[i] = asciiLower(f)
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		longest := 0
		for _, lf := range lfs {
			n := 0
			for n < len(lf) && i+n < len(lt) && lt[i+n] == lf[n] {
				n++
			}
			if n >= min(len(lf), minStart) {
				longest = max(longest, n)
			}
		}
		if n := longest; n > 0 {
			b.WriteString(Redacted)
			i += n
			continue
		}
		b.WriteByte(text[i])
		i++
	}
	return b.String()
}

// asciiLower is s with A-Z in lower case, every byte where it was.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
