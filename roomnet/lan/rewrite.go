package lan

import (
	"bytes"
	"net/netip"
	"regexp"
	"strconv"

	"golang.org/x/net/dns/dnsmessage"
)

// Rewrites a discovery may name (Discovery.Rewrite), on top of the
// generic address rewriting every bridged packet gets.
const (
	RewriteMinecraft = "minecraft" // the port in Minecraft's [AD]port[/AD]
	RewriteDNS       = "dns"       // a DNS message (mDNS): A records
)

var minecraftAD = regexp.MustCompile(`\[AD\]([0-9]{1,5})\[/AD\]`)

// rewriteMinecraft maps the announcing host's game port in Minecraft's
// [AD]port[/AD] to the port that leads to it here.
func rewriteMinecraft(payload []byte, port func(uint16) uint16) []byte {
	return minecraftAD.ReplaceAllFunc(payload, func(m []byte) []byte {
		n, err := strconv.ParseUint(string(minecraftAD.FindSubmatch(m)[1]), 10, 16)
		if err != nil || n == 0 {
			return m
		}
		return []byte("[AD]" + strconv.Itoa(int(port(uint16(n)))) + "[/AD]")
	})
}

// RewriteAddrs replaces, in a discovery payload, each address of from
// (the sender's LAN address, its room address) with to (the address
// this side's game reaches the sender through): as 4 binary bytes and
// as dotted text (not inside a longer number: 10.0.0.1 is not rewritten
// in 10.0.0.12). A DNS message (dns) is rewritten record by record
// instead: A records that hold one of from. The payload is not changed
// in place.
func RewriteAddrs(payload []byte, from []netip.Addr, to netip.Addr, dns bool) []byte {
	if !to.Is4() {
		return payload
	}
	if dns {
		if out, ok := rewriteDNS(payload, from, to); ok {
			return out
		}
	}
	out := payload
	t4 := to.As4()
	tText := []byte(to.String())
	for _, f := range from {
		if !f.Is4() || f == to {
			continue
		}
		f4 := f.As4()
		if bytes.Contains(out, f4[:]) {
			out = bytes.ReplaceAll(out, f4[:], t4[:])
		}
		out = replaceDotted(out, []byte(f.String()), tText)
	}
	return out
}

// replaceDotted replaces old with new where old is not part of a longer
// dotted number.
func replaceDotted(b, old, new []byte) []byte {
	if len(old) == 0 || !bytes.Contains(b, old) {
		return b
	}
	var out []byte
	last := 0 // b[last:] is not copied yet
	for from := 0; ; {
		i := bytes.Index(b[from:], old)
		if i < 0 {
			break
		}
		i += from
		end := i + len(old)
		prev := i == 0 || !isDottedByte(b[i-1])
		next := end == len(b) || !isDigit(b[end]) && !(b[end] == '.' && end+1 < len(b) && isDigit(b[end+1]))
		if prev && next {
			out = append(out, b[last:i]...)
			out = append(out, new...)
			last = end
		}
		from = i + 1
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isDottedByte(c byte) bool { return isDigit(c) || c == '.' }

// rewriteDNS rewrites the A records of a DNS message that hold one of
// from; ok is false when payload is not a DNS message.
func rewriteDNS(payload []byte, from []netip.Addr, to netip.Addr) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(payload)
	if err != nil {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, false
	}
	var sections [3][]dnsmessage.Resource
	if sections[0], err = p.AllAnswers(); err != nil {
		return nil, false
	}
	if sections[1], err = p.AllAuthorities(); err != nil {
		return nil, false
	}
	if sections[2], err = p.AllAdditionals(); err != nil {
		return nil, false
	}
	changed := false
	for _, sec := range sections {
		for _, r := range sec {
			a, ok := r.Body.(*dnsmessage.AResource)
			if !ok {
				continue
			}
			for _, f := range from {
				if f.Is4() && a.A == f.As4() {
					a.A = to.As4()
					changed = true
				}
			}
		}
	}
	if !changed {
		return payload, true
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, len(payload)+64), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, false
	}
	for _, q := range qs {
		if err := b.Question(q); err != nil {
			return nil, false
		}
	}
	starts := []func() error{b.StartAnswers, b.StartAuthorities, b.StartAdditionals}
	for i, sec := range sections {
		if err := starts[i](); err != nil {
			return nil, false
		}
		for _, r := range sec {
			if err := addResource(&b, r); err != nil {
				return nil, false
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil, false
	}
	return out, true
}

// addResource adds a parsed resource to a builder.
func addResource(b *dnsmessage.Builder, r dnsmessage.Resource) error {
	switch body := r.Body.(type) {
	case *dnsmessage.AResource:
		return b.AResource(r.Header, *body)
	case *dnsmessage.AAAAResource:
		return b.AAAAResource(r.Header, *body)
	case *dnsmessage.CNAMEResource:
		return b.CNAMEResource(r.Header, *body)
	case *dnsmessage.MXResource:
		return b.MXResource(r.Header, *body)
	case *dnsmessage.NSResource:
		return b.NSResource(r.Header, *body)
	case *dnsmessage.PTRResource:
		return b.PTRResource(r.Header, *body)
	case *dnsmessage.SOAResource:
		return b.SOAResource(r.Header, *body)
	case *dnsmessage.SRVResource:
		return b.SRVResource(r.Header, *body)
	case *dnsmessage.TXTResource:
		return b.TXTResource(r.Header, *body)
	case *dnsmessage.OPTResource:
		return b.OPTResource(r.Header, *body)
	case *dnsmessage.UnknownResource:
		return b.UnknownResource(r.Header, *body)
	}
	return dnsmessage.ErrNotStarted
}
