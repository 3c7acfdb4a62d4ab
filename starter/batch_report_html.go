package main

import (
	"cmp"
	"html/template"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/mailmove/mailmove/internal/humanize"
	"github.com/mailmove/mailmove/workflows"
)

// htmlReport is what `batch report --format html` renders: one
// self-contained file an admin can mail on (no script, no external style).
type htmlReport struct {
	Batch     string
	Generated time.Time
	Totals    totals
	ByStatus  []statusCount
	Moves     []htmlMove
	Problems  []problem
}

type statusCount struct {
	Status workflows.Status
	N      int
}

type htmlMove struct {
	workflows.MoveStatus
	Bytes    string
	SyncTime string
	Waits    []string
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{"add": func(a, b int) int { return a + b }}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Batch {{.Batch}}: migration report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f3f3f3}.Failed{color:#b00020}.CompletedWithWarnings{color:#a15c00}.Completed{color:#1b6e20}
small{color:#666}
</style></head><body>
<h1>Batch {{.Batch}}</h1>
<p><small>Report made {{.Generated.Format "2006-01-02 15:04 MST"}} by mailmove.</small></p>
<p>{{.Totals.Mailboxes}} mailboxes:{{range .ByStatus}} {{.N}} {{.Status}};{{end}} {{.Totals.MessagesCopied}} messages copied.</p>
<h2>Mailboxes</h2>
<table><tr><th>Mailbox</th><th>Status</th><th>Grade</th><th>Messages</th><th>Bytes</th><th>Initial sync took</th><th>Waits</th><th>Bad items</th></tr>
{{range .Moves}}<tr><td>{{.Mailbox}}</td><td class="{{.Status}}">{{.Status}}<br><small>{{.StatusDetail}}</small></td><td>{{if .Grade}}{{.Grade}}{{else}}-{{end}}</td>
<td>{{.Copied}} copied, {{.Matched}} found, of {{.MessagesTotal}}</td><td>{{.Bytes}}</td><td>{{.SyncTime}}</td>
<td>{{range .Waits}}{{.}}<br>{{end}}</td>
<td>{{add (len .BadItems) .BadItemsNotListed}}{{range .BadItems}}<br><small>{{.Folder}} UID {{.UID}} ({{.Size}} bytes): {{.Reason}}</small>{{end}}{{if .BadItemsNotListed}}<br><small>and {{.BadItemsNotListed}} more: mailmove move status {{.Mailbox}} --batch {{.Batch}}</small>{{end}}</td></tr>
{{end}}</table>
{{if .Problems}}<h2>What to do</h2>
<table><tr><th>Mailbox</th><th>Problem</th><th>Side</th><th>What happened</th><th>Remedy</th></tr>
{{range .Problems}}<tr><td>{{.Mailbox}}</td><td>{{.Category}}</td><td>{{.Side}}</td><td>{{.Message}}</td><td>{{.Remedy}}</td></tr>
{{end}}</table>{{else}}<p>No failures or warnings.</p>{{end}}
</body></html>
`))

// writeHTMLReport renders the batch's report as one HTML file.
func writeHTMLReport(out io.Writer, rep batchReport, now time.Time) error {
	r := htmlReport{Batch: rep.Batch, Generated: now, Totals: rep.Totals, Problems: problems(rep)}
	for s, n := range rep.Totals.ByStatus {
		r.ByStatus = append(r.ByStatus, statusCount{s, n})
	}
	slices.SortFunc(r.ByStatus, func(a, b statusCount) int { return cmp.Compare(a.Status, b.Status) })
	for _, m := range rep.Moves {
		h := htmlMove{MoveStatus: m, Bytes: humanize.Bytes(m.Bytes), SyncTime: "-"}
		if !m.Started.IsZero() && !m.SyncedAt.IsZero() {
			h.SyncTime = m.SyncedAt.Sub(m.Started).Round(time.Second).String()
		}
		for _, detail := range slices.Sorted(maps.Keys(m.StallTime)) {
			h.Waits = append(h.Waits, detail+" "+m.StallTime[detail].Round(time.Second).String())
		}
		r.Moves = append(r.Moves, h)
	}
	return reportPage.Execute(out, r)
}
