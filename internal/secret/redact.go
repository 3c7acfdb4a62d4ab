package secret

import (
	"encoding/base64"
	"regexp"
	"strings"
)

// Redacted stands where Redact took a secret out.
const Redacted = "[redacted]"

// Redact takes every secret out of text, in the forms a server may echo
// it: as it is, as an IMAP quoted string (\ and " escaped), and in base64
// (standard or URL-safe, at any alignment, as inside the AUTHENTICATE
// PLAIN or XOAUTH2 response it was sent in). Base64 is taken out with the
// characters around it that also encode its bits. Secrets shorter than 3
// bytes are taken out only as they are.
func Redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)} {
			text = strings.ReplaceAll(text, form, Redacted)
		}
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
