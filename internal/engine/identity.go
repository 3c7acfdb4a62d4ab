package engine

import (
	"bytes"
	"crypto/sha256"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/charset"
)

// identity is how a message is recognised on the other server without
// reading it whole: its INTERNALDATE (which APPEND sets) to the second, and
// a digest of the headers that say which message it is (Message-ID, Date,
// From, To, Cc, Subject), each normalised so that a server re-folding or
// re-encoding them does not change it.
//
// The size is not part of it: Exchange reports other sizes than the bytes
// appended, Gmail adds headers. Two distinct messages share an identity
// only if all those headers and the second they arrived agree; identities
// are matched as a multiset, one copy per source message, so even then no
// message is claimed twice.
type identity struct {
	date   int64
	digest [16]byte
}

// identityFields are the headers an identity digests; fetched with
// BODY.PEEK[HEADER.FIELDS (...)], so the server sends nothing else.
var identityFields = []string{"Message-ID", "Date", "From", "To", "Cc", "Subject"}

var identitySection = &imap.FetchItemBodySection{
	Specifier:    imap.PartSpecifierHeader,
	HeaderFields: identityFields,
	Peek:         true,
}

// identityOf digests the identityFields of header (as returned for
// identitySection) with the message's INTERNALDATE.
func identityOf(date time.Time, header []byte) identity {
	id := identity{date: date.Unix()}
	h := sha256.New()
	msg, err := mail.ReadMessage(bytes.NewReader(append(bytes.TrimRight(header, "\r\n"), "\r\n\r\n"...)))
	if err != nil {
		// Not parseable as headers: the bytes, white space folded.
		h.Write([]byte(strings.Join(strings.Fields(string(header)), " ")))
	} else {
		for _, f := range identityFields {
			h.Write([]byte(normalizeField(f, msg.Header.Get(f))))
			h.Write([]byte{0})
		}
	}
	copy(id.digest[:], h.Sum(nil))
	return id
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// normalizeField reduces a header value to what survives a server that
// re-folds, re-quotes or re-encodes it.
func normalizeField(name, v string) string {
	switch name {
	case "Message-ID":
		return strings.Join(strings.Fields(v), "")
	case "Date":
		if t, err := mail.ParseDate(v); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	case "From", "To", "Cc":
		if list, err := mail.ParseAddressList(v); err == nil {
			addrs := make([]string, len(list))
			for i, a := range list {
				addrs[i] = strings.ToLower(a.Address)
			}
			slices.Sort(addrs)
			return strings.Join(addrs, ",")
		}
	case "Subject":
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	return strings.Join(strings.Fields(v), " ")
}

// readLimited reads at most limit bytes of r and discards the rest: a
// server may announce a header block of any size.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if _, derr := io.Copy(io.Discard, r); err == nil {
		err = derr
	}
	return b, err
}
