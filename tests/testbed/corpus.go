package testbed

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// Message is one sample message as it is appended to a server.
type Message struct {
	// Raw is the RFC 5322 message with CRLF line endings.
	Raw []byte
	// Flags are IMAP system flags and keywords, sorted.
	Flags []string
	// InternalDate is in UTC with second precision, as IMAP keeps it.
	InternalDate time.Time
}

// Folder is one mailbox of a sample account.
type Folder struct {
	// Name uses "/" as hierarchy separator whatever the server's separator;
	// Seed translates it.
	Name       string
	Messages   []Message
	Subscribed bool
}

// corpusEpoch anchors every sample date so that the corpus does not depend
// on when it is generated.
var corpusEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type folderKind int

const (
	folderKindRegular folderKind = iota
	folderKindInbox
	folderKindSent
	folderKindDrafts
	folderKindTrash
	folderKindJunk
	folderKindArchive
)

type folderPlan struct {
	name       string
	weight     int // share of the messages; 0 keeps the folder empty
	subscribed bool
	kind       folderKind
	from, to   time.Time // internal dates fall in [from, to)
}

func year(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }

// samplePlan is the folder tree of SampleMailbox. Parents come before their
// children so that creating them in order never relies on the server
// creating intermediate levels.
var samplePlan = []folderPlan{
	{"INBOX", 30, true, folderKindInbox, year(2019), corpusEpoch},
	{"INBOX/Receipts", 3, true, folderKindRegular, year(2021), corpusEpoch},
	{"Sent", 12, true, folderKindSent, year(2019), corpusEpoch},
	{"Drafts", 2, true, folderKindDrafts, year(2025), corpusEpoch},
	{"Trash", 4, true, folderKindTrash, year(2025), corpusEpoch},
	{"Junk", 3, true, folderKindJunk, year(2025), corpusEpoch},
	{"Archive", 4, true, folderKindArchive, year(2019), year(2023)},
	{"Archive/2023", 6, false, folderKindArchive, year(2023), year(2024)},
	{"Archive/2024", 6, true, folderKindArchive, year(2024), year(2025)},
	{"Archive/2024/Q1 Reports", 3, true, folderKindArchive, year(2024), time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)},
	{"Projets", 2, true, folderKindRegular, year(2022), corpusEpoch},
	{"Projets/Été 2026", 3, true, folderKindRegular, year(2025), corpusEpoch},
	{"Kunden", 1, false, folderKindRegular, year(2020), corpusEpoch},
	{"Kunden/Müller & Söhne", 3, true, folderKindRegular, year(2020), corpusEpoch},
	{"日本語", 2, true, folderKindRegular, year(2022), corpusEpoch},
	{"Empty", 0, true, folderKindRegular, year(2019), corpusEpoch},
}

// SampleMailbox returns a deterministic sample account holding exactly
// messages messages: the same seed always yields byte-identical folders.
//
// The tree has INBOX (with a child), Sent, Drafts, Trash, Junk, a nested
// Archive, names with spaces, '&' and non-ASCII characters, two
// unsubscribed folders and one folder ("Empty") that never gets messages.
// When messages is at least the number of non-empty folders, each of them
// gets at least one. Messages are mostly 1–10 KB of text, some
// multipart/alternative, about one in eight multipart/mixed with a 20–200 KB
// base64 attachment; within a folder they are in internal-date order.
func SampleMailbox(seed int64, messages int) []Folder {
	g := newGenerator(seed)

	var weighted []int // indexes of folders that may receive messages
	total := 0
	for i, p := range samplePlan {
		if p.weight > 0 {
			weighted = append(weighted, i)
			total += p.weight
		}
	}
	counts := make([]int, len(samplePlan))
	remaining := messages
	if messages >= len(weighted) {
		for _, i := range weighted {
			counts[i]++
		}
		remaining -= len(weighted)
	}
	for range max(remaining, 0) {
		n := g.r.IntN(total)
		for _, i := range weighted {
			if n -= samplePlan[i].weight; n < 0 {
				counts[i]++
				break
			}
		}
	}

	folders := make([]Folder, len(samplePlan))
	for i, p := range samplePlan {
		dates := make([]time.Time, counts[i])
		for j := range dates {
			dates[j] = g.date(p.from, p.to)
		}
		slices.SortFunc(dates, time.Time.Compare)
		folders[i] = Folder{Name: p.name, Subscribed: p.subscribed, Messages: make([]Message, 0, counts[i])}
		for _, d := range dates {
			folders[i].Messages = append(folders[i].Messages, g.message(p, d))
		}
	}
	return folders
}

// LargeMessage returns a deterministic multipart/mixed message of exactly
// size bytes (at least about 1 KB; smaller sizes yield the smallest message
// possible), flagged \Seen. Use it for size-limit and streaming tests.
func LargeMessage(seed int64, size int) Message {
	g := newGenerator(seed)
	g.n = -1 // keeps its Message-ID apart from SampleMailbox's
	date := g.date(year(2024), corpusEpoch)
	boundary := g.boundary()

	var head bytes.Buffer
	g.headers(&head, date, g.correspondent(), owner, fmt.Sprintf("Large message %d (%d bytes)", seed, size), false)
	header(&head, "Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	head.WriteString("\r\n")
	head.WriteString("This is a multi-part message in MIME format.\r\n")
	head.WriteString("--" + boundary + "\r\n")
	header(&head, "Content-Type", "text/plain; charset=us-ascii")
	head.WriteString("\r\n")
	head.WriteString("A large attachment follows.\r\n")

	var attHead bytes.Buffer
	attHead.WriteString("--" + boundary + "\r\n")
	header(&attHead, "Content-Type", "application/octet-stream")
	header(&attHead, "Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fmt.Sprintf("large-%d.bin", seed)}))
	header(&attHead, "Content-Transfer-Encoding", "base64")
	attHead.WriteString("\r\n")
	tail := "--" + boundary + "--\r\n"

	// Leave 100–180 bytes of slack for filler lines in the text part, which
	// bring the message to the exact size.
	fixed := head.Len() + attHead.Len() + len(tail)
	n := max((size-fixed-100)/78*57, 0)
	for n > 0 && fixed+base64Len(n)+100 > size {
		n -= 57
	}
	data := make([]byte, n)
	g.fill(data)

	var raw bytes.Buffer
	raw.Grow(size)
	raw.Write(head.Bytes())
	writeFiller(&raw, size-fixed-base64Len(n))
	raw.Write(attHead.Bytes())
	writeBase64(&raw, data)
	raw.WriteString(tail)
	return Message{Raw: raw.Bytes(), Flags: []string{`\Seen`}, InternalDate: date}
}

// base64Len is the length of n bytes encoded by writeBase64.
func base64Len(n int) int {
	enc := base64.StdEncoding.EncodedLen(n)
	return enc + (enc+75)/76*2
}

// writeFiller writes exactly n bytes of short text lines (none when n < 2).
func writeFiller(b *bytes.Buffer, n int) {
	const pattern = "filler-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"
	for n >= 2 {
		// Line length (with CRLF) between 2 and 78, never leaving a lone byte.
		l := min(n, 78)
		if n-l == 1 {
			l--
		}
		b.WriteString(pattern[:l-2])
		b.WriteString("\r\n")
		n -= l
	}
}

func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	if len(enc) > 0 {
		b.WriteString(enc)
		b.WriteString("\r\n")
	}
}

func header(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteString(": ")
	b.WriteString(value)
	b.WriteString("\r\n")
}

// owner is the account holder of every sample mailbox.
var owner = mail.Address{Name: "Alex Martin", Address: "alex.martin@example.com"}

var correspondents = []mail.Address{
	{Name: "Dana Scully", Address: "dana.scully@example.org"},
	{Name: "José Núñez", Address: "jose.nunez@example.es"},
	{Name: "Jürgen Groß", Address: "j.gross@example.de"},
	{Name: "Chloé Dubois", Address: "chloe@example.fr"},
	{Name: "山田太郎", Address: "taro.yamada@example.jp"},
	{Name: "Priya Natarajan", Address: "priya@example.in"},
	{Name: "O'Brien, Sean", Address: "sean.obrien@example.ie"},
	{Name: "", Address: "noreply@shop.example.com"},
	{Name: "Build Bot", Address: "ci@build.example.net"},
	{Name: "Ольга Иванова", Address: "olga@example.ru"},
}

var asciiSubjects = []string{
	"Quarterly report draft",
	"Lunch on Friday?",
	"Your order has shipped",
	"Meeting notes: roadmap review",
	"Invoice 2024-0042",
	"Re: contract renewal",
	"Build failed on main",
	"Photos from the trip",
	"Agenda for next week",
	"Password reset request",
	"Welcome to the team!",
	"Minutes of the board meeting",
}

var unicodeSubjects = []string{
	"Réunion d'équipe – compte rendu",
	"Grüße aus München",
	"会議の議事録について",
	"Отчёт за квартал",
	"¿Nos vemos mañana?",
	"Café ☕ et croissants",
}

var asciiWords = strings.Fields(`the project team review budget meeting schedule
	update please attached document thanks regards customer order invoice
	delivery deadline quarter report numbers draft feedback proposal contract
	server migration mailbox folder message archive weekly summary question
	answer tomorrow morning afternoon office remote client support ticket
	release version plan risk issue follow-up decision agenda notes`)

var unicodeWords = strings.Fields(`réunion été façade naïve Müller größer
	Straße café déjà vu señor mañana 日本語 こんにちは Привет данные ☕ €100 Zürich`)

var attachmentNames = []struct{ name, contentType string }{
	{"report-2024-Q1.pdf", "application/pdf"},
	{"photo.jpg", "image/jpeg"},
	{"Präsentation Q1.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
	{"data export.csv", "text/csv"},
	{"archive.zip", "application/zip"},
}

var zones = []*time.Location{
	time.UTC,
	time.FixedZone("CET", 3600),
	time.FixedZone("EST", -5*3600),
	time.FixedZone("JST", 9*3600),
	time.FixedZone("IST", 5*3600+1800),
}

// generator produces sample messages from one deterministic random stream.
type generator struct {
	r    *rand.Rand
	seed int64
	n    int // messages generated, for unique Message-IDs and boundaries
}

func newGenerator(seed int64) *generator {
	return &generator{r: rand.New(rand.NewPCG(uint64(seed), 0x6d61696c6d6f7665)), seed: seed}
}

func (g *generator) pct(p int) bool { return g.r.IntN(100) < p }

func (g *generator) date(from, to time.Time) time.Time {
	span := int64(to.Sub(from) / time.Second)
	return from.Add(time.Duration(g.r.Int64N(span)) * time.Second)
}

func (g *generator) correspondent() mail.Address {
	return correspondents[g.r.IntN(len(correspondents))]
}

func (g *generator) boundary() string {
	return fmt.Sprintf("=_testbed_%d_%d_%08x", g.seed, g.n, g.r.Uint32())
}

func (g *generator) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := g.r.Uint64()
		for j := i; j < min(i+8, len(b)); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

// headers writes the envelope headers common to all sample messages.
func (g *generator) headers(b *bytes.Buffer, date time.Time, from, to mail.Address, subject string, incoming bool) {
	sent := date.Add(-time.Duration(g.r.IntN(600)) * time.Second).In(zones[g.r.IntN(len(zones))])
	if incoming {
		header(b, "Return-Path", "<"+from.Address+">")
		header(b, "Received", fmt.Sprintf("from mx.example.net (mx.example.net [192.0.2.%d]) by imap.example.com with ESMTPS; %s",
			1+g.r.IntN(254), date.Format(time.RFC1123Z)))
	}
	header(b, "Date", sent.Format(time.RFC1123Z))
	header(b, "From", addressString(from))
	header(b, "To", addressString(to))
	if g.pct(15) {
		header(b, "Cc", addressString(g.correspondent()))
	}
	header(b, "Subject", subject)
	header(b, "Message-ID", fmt.Sprintf("<%d.%d.%08x@testbed.mailmove.example>", g.seed, g.n, g.r.Uint32()))
	header(b, "MIME-Version", "1.0")
}

func (g *generator) subject(unicode bool) string {
	if unicode {
		s := unicodeSubjects[g.r.IntN(len(unicodeSubjects))]
		if g.pct(50) {
			return mime.BEncoding.Encode("utf-8", s)
		}
		return mime.QEncoding.Encode("utf-8", s)
	}
	return asciiSubjects[g.r.IntN(len(asciiSubjects))]
}

// text returns at least size bytes of prose as lines of at most 72
// characters, each ending in CRLF.
func (g *generator) text(size int, unicode bool) string {
	var b, line strings.Builder
	for b.Len() < size {
		w := asciiWords[g.r.IntN(len(asciiWords))]
		if unicode && g.pct(20) {
			w = unicodeWords[g.r.IntN(len(unicodeWords))]
		}
		if line.Len() > 0 && line.Len()+1+len(w) > 72 {
			b.WriteString(line.String())
			b.WriteString("\r\n")
			line.Reset()
			if g.pct(15) {
				b.WriteString("\r\n") // paragraph break
			}
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(w)
	}
	b.WriteString(line.String())
	b.WriteString("\r\n")
	return b.String()
}

// textPart writes the headers and body of a text/plain part of about size
// bytes in one of three encodings.
func (g *generator) textPart(b *bytes.Buffer, size int, unicode bool) {
	body := g.text(size, unicode)
	switch {
	case !unicode:
		header(b, "Content-Type", "text/plain; charset=us-ascii")
		header(b, "Content-Transfer-Encoding", "7bit")
		b.WriteString("\r\n")
		b.WriteString(body)
	case g.pct(50):
		header(b, "Content-Type", "text/plain; charset=utf-8")
		header(b, "Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.WriteString(body)
	default:
		header(b, "Content-Type", "text/plain; charset=utf-8")
		header(b, "Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		w.Write([]byte(body))
		w.Close()
		b.Write(qp.Bytes())
		if !bytes.HasSuffix(qp.Bytes(), []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
}

func (g *generator) message(p folderPlan, date time.Time) Message {
	g.n++
	outgoing := p.kind == folderKindSent || p.kind == folderKindDrafts
	from, to := g.correspondent(), owner
	if outgoing {
		from, to = owner, g.correspondent()
	}
	unicode := g.pct(20)
	subject := g.subject(unicode)
	if p.kind == folderKindTrash || g.pct(10) {
		subject = "Re: " + subject
	}

	var b bytes.Buffer
	g.headers(&b, date, from, to, subject, !outgoing)
	textSize := 1000 + g.r.IntN(9000)
	switch roll := g.r.IntN(100); {
	case roll < 12:
		boundary := g.boundary()
		att := attachmentNames[g.r.IntN(len(attachmentNames))]
		data := make([]byte, 20_000+g.r.IntN(180_001))
		g.fill(data)
		header(&b, "Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
		b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
		b.WriteString("--" + boundary + "\r\n")
		g.textPart(&b, textSize/4, unicode)
		b.WriteString("--" + boundary + "\r\n")
		header(&b, "Content-Type", att.contentType)
		header(&b, "Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": att.name}))
		header(&b, "Content-Transfer-Encoding", "base64")
		b.WriteString("\r\n")
		writeBase64(&b, data)
		b.WriteString("--" + boundary + "--\r\n")
	case roll < 20:
		boundary := g.boundary()
		text := g.text(textSize/2, false)
		header(&b, "Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": boundary}))
		b.WriteString("\r\n--" + boundary + "\r\n")
		header(&b, "Content-Type", "text/plain; charset=us-ascii")
		b.WriteString("\r\n")
		b.WriteString(text)
		b.WriteString("--" + boundary + "\r\n")
		header(&b, "Content-Type", "text/html; charset=us-ascii")
		b.WriteString("\r\n<html><body>\r\n")
		for line := range strings.SplitSeq(strings.TrimSuffix(text, "\r\n"), "\r\n") {
			b.WriteString("<p>" + line + "</p>\r\n")
		}
		b.WriteString("</body></html>\r\n")
		b.WriteString("--" + boundary + "--\r\n")
	default:
		g.textPart(&b, textSize, unicode)
	}
	return Message{Raw: b.Bytes(), Flags: g.flags(p.kind), InternalDate: date}
}

func (g *generator) flags(kind folderKind) []string {
	var flags []string
	add := func(p int, flag string) {
		if g.pct(p) {
			flags = append(flags, flag)
		}
	}
	switch kind {
	case folderKindSent:
		flags = append(flags, `\Seen`)
	case folderKindDrafts:
		flags = append(flags, `\Draft`)
		add(50, `\Seen`)
	case folderKindTrash:
		add(90, `\Seen`)
	case folderKindJunk:
		flags = append(flags, "$Junk")
		add(30, `\Seen`)
	case folderKindArchive:
		add(95, `\Seen`)
		add(5, `\Flagged`)
		add(15, `\Answered`)
	default:
		add(70, `\Seen`)
		add(10, `\Flagged`)
		add(15, `\Answered`)
		add(5, "$Forwarded")
		add(5, "ProjectX")
	}
	slices.Sort(flags)
	return flags
}

// addressString formats a for a header, RFC 2047-encoding non-ASCII names.
func addressString(a mail.Address) string { return a.String() }
