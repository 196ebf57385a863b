package main

// RealtimeService against a real nats-server (from PATH) and a real bridge (RB_BIN, else
// target/debug/realtime-bridge at the repository root): the mode chosen from the stream lookup
// (and looked up again in auto mode, when the stream appears or is deleted, a send then delivered
// once), one stored copy of a send retried with the same id, input errors that send nothing,
// presence, and no_bridge.
// scripts/test-demo.sh runs them with `go test`.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// startNATS runs nats-server with JetStream on a free port and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	url, _ := runNATS(t, "-p", "-1", "-js")
	return url
}

// runNATS runs nats-server with args (a port, -js or not) and returns its URL and a stop
// function.
func runNATS(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("nats-server", append([]string{"-a", "127.0.0.1", "-sd", dir, "--ports_file_dir", dir}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("nats-server (scripts/setup.sh puts it on PATH): %v", err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	// The server writes its ports file once it listens.
	portsFile := filepath.Join(dir, fmt.Sprintf("nats-server_%d.ports", cmd.Process.Pid))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(portsFile); err == nil {
			var ports struct{ Nats []string }
			if json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
				return ports.Nats[0], stop
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nats-server wrote no ports file in 10 s")
	return "", nil
}

// startBridge runs the bridge (history on: it creates the stream REALTIME) and returns its URL.
func startBridge(t *testing.T, natsURL string) string {
	t.Helper()
	bin := os.Getenv("RB_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "..", "target", "debug", "realtime-bridge")
	}
	cmd := exec.Command(bin, "serve", "--nats-url", natsURL, "--listen", "127.0.0.1:0", "--no-auth",
		"--history", "on", "--log-format", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // the log goes to either, depending on the build
	if err := cmd.Start(); err != nil {
		t.Fatalf("the bridge (RB_BIN=%s): %v", bin, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct {
				Fields struct{ Message, Addr string }
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Fields.Message == "listening" {
				addr <- line.Fields.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, out) // keep the pipe drained
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatalf("the bridge did not log \"listening\" in 20 s")
		return ""
	}
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func storedMessages(t *testing.T, nc *nats.Conn) uint64 {
	t.Helper()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo("REALTIME")
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestJetStreamModeStoresARetriedSendOnce(t *testing.T) {
	url := startNATS(t)
	startBridge(t, url)
	nc := connect(t, url)
	ctx := ctxT(t)
	rt, err := NewRealtimeService(ctx, nc, Options{Mode: ModeJetStream})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Mode() != ModeJetStream {
		t.Fatalf("mode %s with the stream present", rt.Mode())
	}
	// The same message id twice, as a caller retrying after a lost acknowledgement would.
	for i := 0; i < 2; i++ {
		if err := rt.SendEventToUser(ctx, "u1", "message_new", map[string]int{"n": 1}, WithMsgID("m-1")); err != nil {
			t.Fatal(err)
		}
	}
	// Three distinct users (one repeated): three subjects, each with its own id.
	if err := rt.SendEventToUsers(ctx, []string{"u1", "u2", "u1", "u3"}, "notification", map[string]int{"n": 2}, WithMsgID("m-2")); err != nil {
		t.Fatal(err)
	}
	if err := rt.BroadcastEvent(ctx, "system_alert", "hello"); err != nil {
		t.Fatal(err)
	}
	if n := storedMessages(t, nc); n != 5 {
		t.Fatalf("stream holds %d messages, want 5 (1 + 3 + 1)", n)
	}
}

func TestInputErrorsSendNothing(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	ctx := ctxT(t)
	rt, err := NewRealtimeService(ctx, nc, Options{Mode: ModeCore, MaxEventBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		code string
		send func() error
	}{
		{"invalid_user_id", func() error { return rt.SendEventToUser(ctx, "a.b", "x", 1) }},
		{"invalid_user_id", func() error { return rt.SendEventToUsers(ctx, []string{"ok", "*"}, "x", 1) }},
		{"invalid_user_id", func() error { return rt.SendEventToUser(ctx, strings.Repeat("u", 129), "x", 1) }},
		{"invalid_event_name", func() error { return rt.SendEventToUser(ctx, "42", "", 1) }},
		{"invalid_event_name", func() error { return rt.BroadcastEvent(ctx, "a>", 1) }},
		{"reserved_event", func() error { return rt.SendEventToUser(ctx, "42", "end", 1) }},
		{"reserved_event", func() error { return rt.BroadcastEvent(ctx, "reset", 1) }},
		{"invalid_data", func() error { return rt.SendEventToUser(ctx, "42", "x", math.NaN()) }},
		{"invalid_data", func() error { return rt.SendEventToUser(ctx, "42", "x", make(chan int)) }},
		{"too_large", func() error { return rt.SendEventToUser(ctx, "42", "x", strings.Repeat("a", 63)) }},
	}
	for _, c := range cases {
		err := c.send()
		if got := ErrorCode(err); got != c.code {
			t.Errorf("want %s, got %v", c.code, err)
		}
	}
	if _, err := rt.GetPresence(ctx, "a b"); ErrorCode(err) != "invalid_user_id" {
		t.Errorf("presence of an invalid id: %v", err)
	}
	// A round trip, then nothing may be waiting on the wildcard subscription.
	if err := rt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("something was sent: %v %v", m, err)
	}
}

func TestAutoModeWithoutStreamUsesCoreNATS(t *testing.T) {
	url := startNATS(t) // JetStream on, but no bridge created the stream
	nc := connect(t, url)
	ctx := ctxT(t)
	rt, err := NewRealtimeService(ctx, nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Mode() != ModeCore {
		t.Fatalf("mode %s without the stream", rt.Mode())
	}
	if _, err := NewRealtimeService(ctx, nc, Options{Mode: ModeJetStream}); ErrorCode(err) != "unavailable" {
		t.Fatalf("jetstream mode without the stream: %v", err)
	}
	sub, err := nc.SubscribeSync("user.42.message_new")
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.SendEventToUser(ctx, "42", "message_new", map[string]string{"text": "hi"}, WithMsgID("m-1")); err != nil {
		t.Fatal(err)
	}
	if err := rt.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `{"text":"hi"}` || m.Header.Get(nats.MsgIdHdr) != "m-1" {
		t.Fatalf("got %q with id %q", m.Data, m.Header.Get(nats.MsgIdHdr))
	}
}

func TestAutoModeFollowsAStreamCreatedLater(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	ctx := ctxT(t)
	rt, err := NewRealtimeService(ctx, nc, Options{LookupInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Mode() != ModeCore {
		t.Fatalf("mode %s before the bridge", rt.Mode())
	}
	startBridge(t, url) // history on: creates the stream
	// Sends look the stream up again once LookupInterval has passed.
	for end := time.Now().Add(10 * time.Second); rt.Mode() != ModeJetStream; {
		if time.Now().After(end) {
			t.Fatal("still core NATS 10 s after the stream appeared")
		}
		time.Sleep(50 * time.Millisecond)
		if err := rt.SendEventToUser(ctx, "42", "tick", 1); err != nil {
			t.Fatal(err)
		}
	}
}

// addStream creates the stream a bridge with history on would (its subjects, its name).
func addStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "REALTIME", Subjects: []string{"user.>", "broadcast.>"}}); err != nil {
		t.Fatal(err)
	}
}

func TestAutoModeFollowsADeletedStreamToCoreNATS(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	ctx := ctxT(t)
	addStream(t, nc)
	rt, err := NewRealtimeService(ctx, nc, Options{PublishTimeout: 20 * time.Second, LookupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Mode() != ModeJetStream {
		t.Fatalf("mode %s with the stream present", rt.Mode())
	}
	if err := rt.SendEventToUser(ctx, "42", "message_new", 1); err != nil {
		t.Fatal(err)
	}
	if n := storedMessages(t, nc); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	// The bridge's history turned off: its stream goes away.
	js, _ := nc.JetStream()
	if err := js.DeleteStream("REALTIME"); err != nil {
		t.Fatal(err)
	}
	// Three subjects at once, all "no responders": they share one lookup, which finds no
	// stream, and go out with core NATS, well before the publish timeout. (Nobody subscribes
	// to them: a subscriber on a subject takes the JetStream attempt itself, which then gets
	// no answer instead of "no responders".)
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rt.SendEventToUsers(bounded, []string{"42", "43", "44"}, "message_new", 2); err != nil {
		t.Fatalf("send after the stream was deleted: %v", err)
	}
	if rt.Mode() != ModeCore {
		t.Fatalf("mode %s after the stream was deleted", rt.Mode())
	}

	// The following sends are core publishes: a plain subscriber receives them, without the
	// reply subject a JetStream attempt carries.
	subscriber := connect(t, url)
	sub, err := subscriber.SubscribeSync("user.42.message_new")
	if err != nil {
		t.Fatal(err)
	}
	if err := subscriber.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	for i, id := range []string{"m-3", "m-4"} {
		if err := rt.SendEventToUser(bounded, "42", "message_new", i+3, WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.Flush(bounded); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"m-3", "m-4"} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("core subscriber, message %d: %v", i+3, err)
		}
		if string(m.Data) != fmt.Sprint(i+3) || m.Reply != "" || m.Header.Get(nats.MsgIdHdr) != id {
			t.Fatalf("got %q, reply %q, id %q", m.Data, m.Reply, m.Header.Get(nats.MsgIdHdr))
		}
	}
}

func TestAutoModeCountsATimedOutAttemptAsSentWhenTheStreamIsGone(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	ctx := ctxT(t)
	addStream(t, nc)
	rt, err := NewRealtimeService(ctx, nc, Options{AckTimeout: time.Second, PublishTimeout: 20 * time.Second, LookupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.SendEventToUser(ctx, "42", "message_new", 1); err != nil || rt.Mode() != ModeJetStream {
		t.Fatalf("with the stream: mode %s, %v", rt.Mode(), err)
	}

	// A plain subscriber on the subjects stands in for a live bridge with users connected: it
	// takes a JetStream attempt as a message and never answers it, so once the stream is
	// deleted the attempts get no acknowledgement instead of "no responders".
	subscriber := connect(t, url)
	sub, err := subscriber.SubscribeSync("user.*.message_new")
	if err != nil {
		t.Fatal(err)
	}
	if err := subscriber.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	js, _ := nc.JetStream()
	if err := js.DeleteStream("REALTIME"); err != nil {
		t.Fatal(err)
	}

	// Three subjects at once, each attempt without an acknowledgement: one shared lookup finds
	// no stream, and the sends count as delivered (the subscriber has them), well before the
	// publish timeout and without a second copy.
	bounded, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rt.SendEventToUsers(bounded, []string{"42", "43", "44"}, "message_new", 2, WithMsgID("m-2")); err != nil {
		t.Fatalf("send after the stream was deleted: %v", err)
	}
	if rt.Mode() != ModeCore {
		t.Fatalf("mode %s after the stream was deleted", rt.Mode())
	}
	// The following send is a core publish.
	if err := rt.SendEventToUser(bounded, "42", "message_new", 3, WithMsgID("m-3")); err != nil {
		t.Fatal(err)
	}
	if err := rt.Flush(bounded); err != nil {
		t.Fatal(err)
	}

	got := map[string]int{}
	for i := 0; i < 4; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("subscriber, message %d of 4: %v", i+1, err)
		}
		got[m.Subject+" "+string(m.Data)+" "+m.Header.Get(nats.MsgIdHdr)]++
	}
	want := map[string]int{
		"user.42.message_new 2 m-2:user.42.message_new": 1,
		"user.43.message_new 2 m-2:user.43.message_new": 1,
		"user.44.message_new 2 m-2:user.44.message_new": 1,
		"user.42.message_new 3 m-3":                     1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("subscriber got %v, want %v", got, want)
	}
	// Everything the service published has reached the server (the Flush above): a copy more
	// would be waiting by now.
	if err := subscriber.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("a message more: %v (%v)", m, err)
	}
}

func TestAutoModeKeepsJetStreamWhenTheLookupGetsNoAnswer(t *testing.T) {
	url, stop := runNATS(t, "-p", "-1", "-js")
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := ctxT(t)
	addStream(t, nc)
	rt, err := NewRealtimeService(ctx, nc, Options{PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.SendEventToUser(ctx, "42", "message_new", 1); err != nil || rt.Mode() != ModeJetStream {
		t.Fatalf("before the restart: mode %s, %v", rt.Mode(), err)
	}

	// The same port without JetStream: publishes and the stream lookup get "no responders",
	// not an answer that the stream is gone, so auto mode keeps retrying on JetStream.
	stop()
	port := url[strings.LastIndex(url, ":")+1:]
	runNATS(t, "-p", port)
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection in 10 s")
	}
	js, _ := nc.JetStream()
	if _, err := js.StreamInfo("REALTIME", nats.Context(ctx)); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("stream lookup without JetStream: %v, want no responders", err)
	}
	if err := rt.SendEventToUser(ctx, "42", "message_new", 2); ErrorCode(err) != "timeout" {
		t.Fatalf("send without an answer from JetStream: %v", err)
	}
	if rt.Mode() != ModeJetStream {
		t.Fatalf("mode %s after lookups without an answer", rt.Mode())
	}
}

func TestPresence(t *testing.T) {
	url := startNATS(t)
	nc := connect(t, url)
	ctx := ctxT(t)
	rt, err := NewRealtimeService(ctx, nc, Options{Mode: ModeCore})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.IsUserConnected(ctx, "42"); ErrorCode(err) != "no_bridge" {
		t.Fatalf("no bridge running: %v", err)
	}

	bridge := startBridge(t, url)
	// Two streams of user 42, with their client ids.
	for _, id := range []string{"tab-1", "tab-2"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, bridge+"/v1/users/42/events?clientId="+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %s: HTTP %d", id, resp.StatusCode)
		}
	}
	// Asked again until both are listed (bounded): a stream may be registered just after its
	// response headers left.
	var ids []string
	for end := time.Now().Add(5 * time.Second); ; {
		if ids, err = rt.GetConnectedClients(ctx, "42"); err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids, ",") == "tab-1,tab-2" {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("clients %v, want [tab-1 tab-2]", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, err := rt.IsUserConnected(ctx, "7"); err != nil || ok {
		t.Fatalf("user 7: %v %v", ok, err)
	}
}
