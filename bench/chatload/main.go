// Command chatload drives a chat server with a lobby workload and reports
// delivered messages per second, publish-to-receive latency, the latency
// of critical messages, bytes on the wire per client, and the server's
// CPU and RSS. It speaks roomnet's chat protocol and Centrifugo's JSON
// protocol with the same lean client code, so both servers carry the
// same load from the same process. It also serves a bench-only roomnet
// chat node (serve) and measures memory per idle connection (idle).
//
//	chatload serve -addr 127.0.0.1:7100 -data /tmp/x [-storm-enter 100]
//	chatload run   -target roomnet -url ws://127.0.0.1:7100/ws -pid N -clients 1000 -rate 500
//	chatload idle  -target centrifugo -url ws://127.0.0.1:8000/connection/websocket -pid N -steps 1000,5000,10000
//
// scripts/bench-chat.sh runs the whole comparison; docs/benchmarks.md
// has the figures.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chatload serve|run|idle [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want serve, run or idle", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}
