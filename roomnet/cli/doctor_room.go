package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/roomnet/roomnet/roomnet"
)

// RoomCell is one entry of doctor --room's matrix: how From reaches To.
type RoomCell struct {
	To     string `json:"to"`
	Direct bool   `json:"direct"`
	Path   string `json:"path,omitempty"` // the direct endpoint or the relay
	// PeerRelay: through a roommate's peer relay, whose "ip:port:vni:N"
	// is the path (empty in other members' rows for non-admins).
	PeerRelay bool    `json:"peer_relay,omitempty"`
	RTTMS     float64 `json:"rtt_ms,omitempty"`
	// Sent/Lost: this machine's pings (the row measured here); absent in
	// other members' rows, which are their latest reports.
	Sent     int      `json:"sent,omitempty"`
	LossPct  *float64 `json:"loss_pct,omitempty"` // this machine's row only
	Inferred bool     `json:"inferred,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// RoomRow is one member's row: what this machine measured ("ping"), or
// what the server holds for that member ("client" report, "server"
// inference, "" none).
type RoomRow struct {
	From   string     `json:"from"`
	Source string     `json:"source"`
	Cells  []RoomCell `json:"cells"`
}

// roomDoctor pings every other member of the room this machine's session
// is in, publishes the row as this member's path report, and prints the
// members × members matrix with the others' latest reports.
func roomDoctor(ctx context.Context, env Env, count int, asJSON bool) error {
	c, s, err := client(env)
	if err != nil {
		return err
	}
	if s.Room == "" {
		return fail(ExitUsage, "not in a room: start roomnet host or roomnet join first")
	}
	dir, err := stateDir(env)
	if err != nil {
		return err
	}
	probe, err := (&net.Dialer{}).DialContext(ctx, "unix", controlPath(dir))
	if err != nil {
		return fail(ExitError, "no room session runs on this machine (start one with roomnet host or roomnet join)")
	}
	probe.Close()
	members, err := c.Members(ctx, s.Room)
	if err != nil {
		return err
	}
	var others []string
	for _, m := range members {
		if m.Username != s.Username && len(m.Nodes) > 0 {
			others = append(others, m.Username)
		}
	}
	mine := RoomRow{From: s.Username, Source: "ping", Cells: make([]RoomCell, len(others))}
	var wg sync.WaitGroup
	for i, o := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine.Cells[i] = pingMember(ctx, dir, o, count)
		}()
	}
	wg.Wait()

	// This machine's row becomes its path report (the session's own
	// report replaces it within seconds; the admin sees the p50 until then).
	links := cellLinks(mine.Cells, members)
	published := c.ReportPaths(ctx, s.Room, links)

	// The others' rows: their latest reports, as the server shows them
	// (endpoints to admins only).
	if after, err := c.Members(ctx, s.Room); err == nil {
		members = after
	}
	rows := append([]RoomRow{mine}, reportedRows(s.Username, members)...)
	unreachable := 0
	for _, cell := range mine.Cells {
		if cell.Sent == 0 || cell.LossPct == nil || *cell.LossPct == 100 {
			unreachable++
		}
	}
	ok := unreachable == 0
	if asJSON {
		out := map[string]any{"ok": ok, "room": s.Room, "count": count, "rows": rows}
		if published != nil {
			out["publish_error"] = published.Error()
		}
		if err := json.NewEncoder(env.Stdout).Encode(out); err != nil {
			return err
		}
	} else {
		printMatrix(env.Stdout, s.Username, rows, count)
		if published != nil {
			fmt.Fprintf(env.Stdout, "your row was not published: %v\n", published)
		}
	}
	if !ok {
		return fail(ExitDoctor, "%d of %d members do not answer from here", unreachable, len(others))
	}
	return nil
}

// pingMember asks the session to ping member count times and sums up.
func pingMember(ctx context.Context, dir, member string, count int) RoomCell {
	cell := RoomCell{To: member}
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", controlPath(dir))
	if err != nil {
		cell.Error, cell.LossPct = err.Error(), ptr(100.0)
		return cell
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(controlRequest{Cmd: "ping", Member: member, Count: count}); err != nil {
		cell.Error, cell.LossPct = err.Error(), ptr(100.0)
		return cell
	}
	var rtts []float64
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var r PingResult
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			break
		}
		if r.IP == "" { // nothing was pinged
			cell.Error = r.Error
			break
		}
		cell.Sent++
		if r.Error != "" {
			cell.Error = r.Error
			continue
		}
		rtts = append(rtts, r.RTTMS)
		cell.Direct, cell.Path, cell.PeerRelay = r.Direct, r.Path, r.PeerRelay
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		cell.RTTMS = rtts[(len(rtts)-1)/2]
		cell.Error = ""
	}
	loss := 100.0
	if cell.Sent > 0 {
		loss = float64(cell.Sent-len(rtts)) * 100 / float64(cell.Sent)
	}
	cell.LossPct = &loss
	return cell
}

func ptr[T any](v T) *T { return &v }

// cellLinks turns this machine's measured cells into its path report:
// one link per answering member, to the member's first address.
func cellLinks(cells []RoomCell, members []roomnet.Member) []roomnet.Link {
	var links []roomnet.Link
	for _, cell := range cells {
		if cell.Error != "" && cell.RTTMS == 0 {
			continue
		}
		for _, m := range members {
			if m.Username != cell.To || len(m.Nodes) == 0 || len(m.Nodes[0].IPs) == 0 {
				continue
			}
			l := roomnet.Link{Peer: cell.To, IP: m.Nodes[0].IPs[0], Direct: cell.Direct, RTTMS: cell.RTTMS}
			switch {
			case cell.Direct:
				l.Addr = cell.Path
			case cell.PeerRelay:
				l.PeerRelay, l.Addr = true, cell.Path
			default:
				l.Relay = cell.Path
			}
			links = append(links, l)
		}
	}
	return links
}

// reportedRows are the other members' rows: their latest reports, as the
// server shows them (endpoints to admins only).
func reportedRows(me string, members []roomnet.Member) []RoomRow {
	var rows []RoomRow
	for _, m := range members {
		if m.Username == me {
			continue
		}
		r := RoomRow{From: m.Username, Source: m.PathSource, Cells: []RoomCell{}}
		seen := map[string]bool{}
		for _, l := range m.Links {
			// One cell per peer: the first of its addresses (a node
			// has an IPv4 and an IPv6 one, reported apiece).
			if seen[l.Peer] {
				continue
			}
			seen[l.Peer] = true
			cell := RoomCell{To: l.Peer, Direct: l.Direct, PeerRelay: l.PeerRelay, RTTMS: l.RTTMS, Inferred: l.Inferred, Path: l.Relay}
			if l.Direct || l.PeerRelay {
				cell.Path = l.Addr
			}
			r.Cells = append(r.Cells, cell)
		}
		rows = append(rows, r)
	}
	return rows
}

func cellText(c RoomCell, measured bool) string {
	if c.Error != "" && c.RTTMS == 0 {
		return "no answer"
	}
	var b strings.Builder
	if c.Direct {
		b.WriteString("direct")
		if c.Inferred {
			b.WriteString("?")
		}
	} else if c.PeerRelay {
		b.WriteString("peer relay")
	} else {
		b.WriteString("relayed")
	}
	if c.RTTMS > 0 {
		b.WriteString(" " + formatRTT(c.RTTMS))
	}
	if measured && c.LossPct != nil {
		fmt.Fprintf(&b, " %.0f%% loss", *c.LossPct)
	}
	return b.String()
}

func printMatrix(w io.Writer, me string, rows []RoomRow, count int) {
	names := []string{}
	for _, r := range rows {
		names = append(names, r.From)
	}
	sort.Strings(names[1:])
	fmt.Fprintf(w, "from \\ to (%d pings from %s; other rows: their latest reports)\n", count, me)
	width := 12
	for _, r := range rows {
		for _, c := range r.Cells {
			width = max(width, len(cellText(c, r.Source == "ping"))+2)
		}
	}
	line := func(label string, cells []string) {
		var b strings.Builder
		fmt.Fprintf(&b, "%-16s", label)
		for _, c := range cells {
			fmt.Fprintf(&b, "%-*s", width, c)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line("", names)
	for _, r := range rows {
		label := r.From
		switch r.Source {
		case "ping":
			label += " (you)"
		case "server":
			label += " (server)"
		}
		var cells []string
		for _, n := range names {
			text := "-"
			if n == r.From {
				text = "·"
			} else if r.Source == "" {
				text = "no report"
			}
			for _, c := range r.Cells {
				if c.To == n {
					text = cellText(c, r.Source == "ping")
				}
			}
			cells = append(cells, text)
		}
		line(label, cells)
	}
}
