package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/roomnet/roomnet/chat"
	"github.com/roomnet/roomnet/chat/chatclient"
	"github.com/roomnet/roomnet/roomnet"
)

// cmdChat reads and writes a room's (or a lobby's) chat through the chat
// SDK: --send posts one message and exits once it is stored; --tail
// prints the newest messages and exits; otherwise it prints messages as
// they come and sends each line typed on stdin until EOF or Ctrl-C.
func cmdChat(ctx context.Context, args []string, env Env) error {
	fs := newFlags("chat", env)
	roomID := fs.String("room", "", "room id (default: the room this machine is in)")
	lobby := fs.String("lobby", "", "a lobby instead of a room")
	send := fs.String("send", "", "send this message and exit")
	tail := fs.Bool("tail", false, "print the newest messages and exit")
	asJSON := fs.Bool("json", false, "messages as JSON lines")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, s, err := client(env)
	if err != nil {
		return err
	}
	conv := ""
	switch {
	case *lobby != "":
		conv = chat.KindLobby + ":" + *lobby
	case *roomID != "":
		conv = chat.RoomConv(*roomID)
	case s.Room != "":
		conv = chat.RoomConv(s.Room)
	default:
		return fail(ExitUsage, "not in a room: give --room ID or --lobby NAME")
	}
	if _, ok := chat.ConvKind(conv); !ok {
		return fail(ExitUsage, "%q is not a room id or lobby name", strings.TrimPrefix(strings.TrimPrefix(conv, "room:"), "lobby:"))
	}
	url := "ws" + strings.TrimPrefix(c.BaseURL(), "http") + "/ws"
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	cl, err := chatclient.Dial(dctx, chatclient.Options{URL: url, Token: c.Token()})
	cancel()
	if err != nil {
		// Refused or unreachable? The REST API tells an expired login
		// apart from a server that is down.
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, merr := c.Me(mctx)
		cancel()
		var ae *roomnet.Error
		if errors.As(merr, &ae) {
			return merr
		}
		return fail(ExitUnreachable, "chat: cannot reach the server: %v", err)
	}
	defer cl.Close()
	if *lobby != "" {
		if err := cl.Join(ctx, conv); err != nil {
			return fail(ExitError, "chat: joining lobby %s: %v", *lobby, err)
		}
	}
	show := func(m chat.Message) {
		if *asJSON {
			b, _ := json.Marshal(m)
			fmt.Fprintln(env.Stdout, string(b))
			return
		}
		from := m.From
		if m.Kind == chat.KindSystem {
			from = "*"
		}
		fmt.Fprintf(env.Stdout, "%s %s: %s\n", time.UnixMilli(m.TS).Format("15:04:05"), from, m.Body)
	}
	if *send != "" {
		seq, err := cl.Send(conv, *send).Result()
		if err != nil {
			return fail(ExitError, "chat: %v", err)
		}
		fmt.Fprintf(env.Stderr, "sent (#%d)\n", seq)
		return nil
	}
	if *tail {
		msgs, _, err := cl.History(ctx, conv, 0, 20)
		if err != nil {
			return fail(ExitError, "chat: %v", err)
		}
		for _, m := range msgs {
			if m.Kind != chat.KindTombstone {
				show(m)
			}
		}
		return nil
	}
	// Recent messages first (the SDK backfills them on sync), then live.
	handle := func(e chatclient.Event) error {
		switch e.Type {
		case chatclient.EventMessage:
			if e.Conv == conv && e.Msg.Kind != chat.KindTombstone {
				show(e.Msg)
			}
		case chatclient.EventFailed:
			fmt.Fprintf(env.Stderr, "not sent: %q: %v\n", e.Msg.Body, e.Err)
		case chatclient.EventRemoved:
			if e.Conv == conv {
				switch e.Reason {
				case "kicked":
					return fail(ExitKicked, "you were kicked from the room")
				case "closed":
					return fail(ExitRoomClosed, "the room was closed")
				}
				return errStop
			}
		}
		return nil
	}
	synced := time.After(10 * time.Second)
wait:
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-synced:
			break wait
		case e := <-cl.Events():
			if err := handle(e); err != nil {
				return stopped(err)
			}
			if e.Type == chatclient.EventSynced {
				break wait
			}
		}
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(env.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var sent []*chatclient.Pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				// End of input: what was typed is delivered before exiting.
				for _, p := range sent {
					if _, err := p.Result(); err != nil {
						return fail(ExitError, "chat: %q not sent: %v", p.Body, err)
					}
				}
				return nil
			}
			if line = strings.TrimSpace(line); line != "" {
				sent = append(sent, cl.Send(conv, line)) // the SDK retries it
			}
		case e := <-cl.Events():
			if err := handle(e); err != nil {
				return stopped(err)
			}
		}
	}
}

// errStop ends a chat session without an error (the user left the room).
var errStop = errors.New("stop")

func stopped(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}
