// Package measure holds what the load tools under bench/ measure with: a
// lock-free latency histogram and a reader of a process's CPU time and
// memory from /proc. It is for benchmarks only.
package measure

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Hist is a lock-free latency histogram with 2% wide buckets from 1 µs.
// The zero value is ready to use.
type Hist struct {
	buckets [1200]atomic.Int64
	n       atomic.Int64
}

const histBase = 1.02

// Add records one latency.
func (h *Hist) Add(d time.Duration) {
	us := max(float64(d.Microseconds()), 1)
	i := min(int(math.Log(us)/math.Log(histBase)), len(h.buckets)-1)
	h.buckets[i].Add(1)
	h.n.Add(1)
}

// Count is how many latencies were added.
func (h *Hist) Count() int64 { return h.n.Load() }

// Quantile returns the upper bound of the bucket holding quantile q
// (within 2%), or 0 when nothing was added.
func (h *Hist) Quantile(q float64) time.Duration {
	total := h.n.Load()
	if total == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= want {
			return time.Duration(math.Pow(histBase, float64(i+1))) * time.Microsecond
		}
	}
	return 0
}

// Proc reads a process's CPU time and memory from /proc.
type Proc int

// CPU returns the process's user+system time.
func (p Proc) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", int(p)))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may hold spaces: ") state ppid ...".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100), nil // USER_HZ is 100 on Linux
}

// Mem returns a memory field of /proc/PID/status in bytes: "VmRSS" for
// the resident set, "VmHWM" for its peak.
func (p Proc) Mem(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", int(p)))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, int(p))
}

// Procs are processes measured together: a cluster's nodes, or the
// engines they share.
type Procs []Proc

// WithChildren returns the processes and all their descendants now
// (PostgreSQL's backends under its postmaster).
func (ps Procs) WithChildren() Procs {
	var all Procs
	seen := map[Proc]bool{}
	var walk func(p Proc)
	walk = func(p Proc) {
		if seen[p] {
			return
		}
		seen[p] = true
		all = append(all, p)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", int(p)))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", int(p), t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					walk(Proc(c))
				}
			}
		}
	}
	for _, p := range ps {
		walk(p)
	}
	return all
}

// Snapshot is the CPU time of each of a set of processes at one moment.
type Snapshot map[Proc]time.Duration

// Snapshot takes the processes' CPU times; one that cannot be read (gone)
// is left out.
func (ps Procs) Snapshot() Snapshot {
	s := Snapshot{}
	for _, p := range ps {
		if d, err := p.CPU(); err == nil {
			s[p] = d
		}
	}
	return s
}

// Since returns the CPU time the processes of an earlier snapshot used
// since it was taken, summed; those gone since are left out.
func (s Snapshot) Since() time.Duration {
	var sum time.Duration
	for p, before := range s {
		if d, err := p.CPU(); err == nil {
			sum += d - before
		}
	}
	return sum
}

// Mem returns a memory field of the processes, summed.
func (ps Procs) Mem(field string) (int64, error) {
	var sum int64
	for _, p := range ps {
		n, err := p.Mem(field)
		if err != nil {
			return sum, err
		}
		sum += n
	}
	return sum, nil
}
