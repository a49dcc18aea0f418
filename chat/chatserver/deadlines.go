package chatserver

import (
	"container/heap"
	"sync"
	"time"
)

// deadlines tracks every connection's heartbeat deadline with one heap and
// one goroutine, not a timer per connection. expire is called (outside the
// lock) for each connection whose deadline passed.
type deadlines struct {
	mu     sync.Mutex
	h      deadlineHeap
	idx    map[*conn]*deadlineItem
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	expire func(*conn)
}

type deadlineItem struct {
	c   *conn
	at  time.Time
	pos int
}

type deadlineHeap []*deadlineItem

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].pos = i; h[j].pos = j }
func (h *deadlineHeap) Push(x any)        { it := x.(*deadlineItem); it.pos = len(*h); *h = append(*h, it) }
func (h *deadlineHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newDeadlines(expire func(*conn)) *deadlines {
	d := &deadlines{idx: map[*conn]*deadlineItem{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), expire: expire}
	go d.run()
	return d
}

// set (re)arms c's deadline.
func (d *deadlines) set(c *conn, at time.Time) {
	d.mu.Lock()
	if it, ok := d.idx[c]; ok {
		it.at = at
		heap.Fix(&d.h, it.pos)
	} else {
		it := &deadlineItem{c: c, at: at}
		heap.Push(&d.h, it)
		d.idx[c] = it
	}
	first := d.h[0].c == c
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// remove forgets c.
func (d *deadlines) remove(c *conn) {
	d.mu.Lock()
	if it, ok := d.idx[c]; ok {
		heap.Remove(&d.h, it.pos)
		delete(d.idx, c)
	}
	d.mu.Unlock()
}

func (d *deadlines) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.h)
}

func (d *deadlines) close() {
	close(d.stop)
	<-d.done
}

func (d *deadlines) run() {
	defer close(d.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var expired []*conn
		d.mu.Lock()
		now := time.Now()
		for len(d.h) > 0 && !d.h[0].at.After(now) {
			it := heap.Pop(&d.h).(*deadlineItem)
			delete(d.idx, it.c)
			expired = append(expired, it.c)
		}
		next := time.Hour
		if len(d.h) > 0 {
			next = d.h[0].at.Sub(now)
		}
		d.mu.Unlock()
		for _, c := range expired {
			d.expire(c)
		}
		t.Reset(next)
		select {
		case <-d.stop:
			return
		case <-d.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}
