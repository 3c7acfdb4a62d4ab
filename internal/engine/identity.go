package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
)

// identity is how a message is recognised on the other server without
// reading it whole: a digest of the headers that say which message it is
// (Message-ID, Date, From, To, Cc, Subject), each normalised so that a
// server re-folding, re-quoting or re-encoding them (RFC 2047, 8-bit header
// bytes taken as Latin-1, numeric instead of obsolete zones) does not change
// it.
//
// Neither the size nor INTERNALDATE is part of it: Exchange reports other
// sizes than the bytes appended, Gmail adds headers, and a server that
// ignores the zone of APPEND's date shifts INTERNALDATE by hours.
// INTERNALDATE only narrows the search (a copy arrives within a day of its
// message). Identities are matched as multisets, one copy per source
// message; where several source messages share one, a digest of the start
// of their bodies tells them apart, unless the target rewrites bodies.
type identity [16]byte

// ident is what a message's headers say of it: its identity, and the one
// it would have without a Message-ID, which a target may add to a message
// that had none.
type ident struct {
	full, bare identity
	hasMID     bool
}

// key is the identity a source message is known by.
func (i ident) key() identity {
	if i.hasMID {
		return i.full
	}
	return i.bare
}

// keyAmong is the identity a target message is known by, among the source
// messages' keys: its own, or the one without the Message-ID the target may
// have added.
func (i ident) keyAmong(known func(identity) bool) identity {
	if known(i.full) || !known(i.bare) {
		return i.full
	}
	return i.bare
}

// identityFields are the headers an identity digests; fetched with
// BODY.PEEK[HEADER.FIELDS (...)], so the server sends nothing else.
var identityFields = []string{"Message-ID", "Date", "From", "To", "Cc", "Subject"}

var identitySection = &imap.FetchItemBodySection{
	Specifier:    imap.PartSpecifierHeader,
	HeaderFields: identityFields,
	Peek:         true,
}

// bodySection is the start of a message's body, told apart where headers
// are not enough.
var bodySection = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 4096}}

// identOf digests the identityFields of header (as returned for
// identitySection).
func identOf(header []byte) ident {
	fields := map[string]string{}
	msg, err := mail.ReadMessage(bytes.NewReader(append(bytes.TrimRight(header, "\r\n"), "\r\n\r\n"...)))
	if err != nil {
		// Not parseable as headers: the bytes, white space folded.
		fields["raw"] = strings.Join(strings.Fields(latin1(string(header))), " ")
	} else {
		for _, f := range identityFields {
			if v := msg.Header.Get(f); v != "" {
				fields[f] = normalizeField(f, latin1(v))
			}
		}
	}
	digest := func(withMID bool) identity {
		h := sha256.New()
		for _, f := range append(identityFields, "raw") {
			if f == "Message-ID" && !withMID {
				continue
			}
			h.Write([]byte(fields[f]))
			h.Write([]byte{0})
		}
		var id identity
		copy(id[:], h.Sum(nil))
		return id
	}
	_, hasMID := fields["Message-ID"]
	return ident{full: digest(true), bare: digest(false), hasMID: hasMID}
}

// latin1 reads header bytes that are not UTF-8 (raw 8-bit headers of old
// mail) as Latin-1: what a server that re-encodes them into RFC 2047 most
// often assumes.
func latin1(v string) string {
	if utf8.ValidString(v) {
		return v
	}
	r := make([]rune, len(v))
	for i := range len(v) {
		r[i] = rune(v[i])
	}
	return string(r)
}

var (
	wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}
	// addressLike finds addresses where a header does not parse as an
	// address list (bare 8-bit names, stray quotes).
	addressLike = regexp.MustCompile(`[^\s<>"(),;:@]+@[^\s<>"(),;:@]+`)
	// obsoleteZone turns RFC 822's zone names into offsets: Go's parser
	// takes an unknown name as +0000.
	obsoleteZone = strings.NewReplacer(" UT", " +0000", " GMT", " +0000", " EST", " -0500", " EDT", " -0400",
		" CST", " -0600", " CDT", " -0500", " MST", " -0700", " MDT", " -0600", " PST", " -0800", " PDT", " -0700")
)

// normalizeField reduces a header value to what survives a server that
// re-folds, re-quotes or re-encodes it.
func normalizeField(name, v string) string {
	switch name {
	case "Message-ID":
		return strings.Join(strings.Fields(v), "")
	case "Date":
		if t, err := mail.ParseDate(obsoleteZone.Replace(strings.TrimSpace(v))); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	case "From", "To", "Cc":
		var addrs []string
		if list, err := mail.ParseAddressList(v); err == nil {
			for _, a := range list {
				addrs = append(addrs, a.Address)
			}
		} else {
			addrs = addressLike.FindAllString(v, -1)
		}
		for i := range addrs {
			addrs[i] = strings.ToLower(addrs[i])
		}
		slices.Sort(addrs)
		return strings.Join(addrs, ",")
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

// identified is a message as its identity headers describe it.
type identified struct {
	uid  imap.UID
	size int64
	date time.Time
	ident
}

// identityChunk bounds one FETCH of identities, and with it the memory its
// answers take.
const identityChunk = 2000

// eachIdentity streams the identities of the messages of set in the
// selected folder, identityChunk at a time.
func eachIdentity(ctx context.Context, s *Session, folder string, uids []imap.UID, f func(identified)) error {
	for chunk := range slices.Chunk(uids, identityChunk) {
		cmd := s.Client.Fetch(imap.UIDSetNum(chunk...), &imap.FetchOptions{
			UID: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{identitySection},
		})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var m identified
			var header []byte
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					m.uid = item.UID
				case imapclient.FetchItemDataRFC822Size:
					m.size = item.Size
				case imapclient.FetchItemDataInternalDate:
					m.date = item.Time
				case imapclient.FetchItemDataBodySection:
					header, _ = readLimited(item.Literal, 64<<10)
				}
			}
			if m.uid != 0 {
				m.ident = identOf(header)
				f(m)
			}
		}
		if err := cmd.Close(); err != nil {
			return s.classify("fetch headers of "+folder, ctxErr(ctx, err))
		}
	}
	return nil
}

// bodyDigests reads the digest of the start of the given messages' bodies.
func bodyDigests(ctx context.Context, s *Session, folder string, uids []imap.UID) (map[imap.UID]identity, error) {
	out := make(map[imap.UID]identity, len(uids))
	for chunk := range slices.Chunk(uids, identityChunk) {
		cmd := s.Client.Fetch(imap.UIDSetNum(chunk...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{bodySection}})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var uid imap.UID
			var body []byte
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = item.UID
				case imapclient.FetchItemDataBodySection:
					body, _ = readLimited(item.Literal, 8<<10)
				}
			}
			var d identity
			sum := sha256.Sum256(body)
			copy(d[:], sum[:])
			out[uid] = d
		}
		if err := cmd.Close(); err != nil {
			return nil, s.classify("fetch bodies of "+folder, ctxErr(ctx, err))
		}
	}
	return out, nil
}
