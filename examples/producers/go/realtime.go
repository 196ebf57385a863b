package main

// The original port IRealtimeService over NATS, with the publishing rules of the producer
// libraries (docs/protocol.md §1.7) written out with the official client: the stream lookup that
// picks JetStream or core NATS, acknowledged publishing with a bounded window and retries under
// the same message id, input checks before anything is sent, and presence.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Mode is how a RealtimeService publishes.
type Mode string

const (
	// ModeAuto uses JetStream while the bridge's stream exists, else core NATS, following the
	// stream when it appears or goes away.
	ModeAuto Mode = "auto"
	// ModeJetStream requires the stream: every send waits for JetStream's acknowledgement.
	ModeJetStream Mode = "jetstream"
	// ModeCore never uses JetStream (a live-mode bridge: at most once).
	ModeCore Mode = "core"
)

// Options of NewRealtimeService; a zero field takes the default of §1.7.
type Options struct {
	Mode            Mode          // ModeAuto
	Stream          string        // "REALTIME", the bridge's --stream-name
	MaxInFlight     int           // 256 messages waiting for their acknowledgement at once
	AckTimeout      time.Duration // 5 s per attempt
	PublishTimeout  time.Duration // 30 s per send, retries included
	PresenceTimeout time.Duration // 2 s
	MaxEventBytes   int           // 262144, the bridge's --max-event-bytes
	LookupInterval  time.Duration // 30 s: auto mode without the stream looks again this often
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	if o.Stream == "" {
		o.Stream = "REALTIME"
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 5 * time.Second
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 30 * time.Second
	}
	if o.PresenceTimeout <= 0 {
		o.PresenceTimeout = 2 * time.Second
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 262144
	}
	if o.LookupInterval <= 0 {
		o.LookupInterval = 30 * time.Second
	}
	return o
}

// Error is a failed call; Code is one of the codes of §1.7 (invalid_user_id, invalid_event_name,
// reserved_event, invalid_data, too_large, unavailable, timeout, no_bridge).
type Error struct {
	Code    string
	Message string
	Err     error // the cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the §1.7 code of err, or "" when it carries none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// A token (§1.1): user ids and event names can never become a NATS wildcard or an extra level.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func checkUserID(id string) error {
	if !token.MatchString(id) {
		return &Error{Code: "invalid_user_id", Message: fmt.Sprintf("user id %q must be 1 to 128 characters of [A-Za-z0-9_-]", id)}
	}
	return nil
}

func checkEvent(event string) error {
	if !token.MatchString(event) {
		return &Error{Code: "invalid_event_name", Message: fmt.Sprintf("event name %q must be 1 to 128 characters of [A-Za-z0-9_-]", event)}
	}
	if event == "end" || event == "reset" {
		// The stream's control frames: the bridge would drop the event.
		return &Error{Code: "reserved_event", Message: fmt.Sprintf("event name %q is reserved by the bridge", event)}
	}
	return nil
}

// RealtimeService is IRealtimeService: sendEventToUser, sendEventToUsers, broadcastEvent,
// getConnectedClients, isUserConnected. Safe for concurrent use.
type RealtimeService struct {
	nc    *nats.Conn
	opts  Options
	slots chan struct{} // the in-flight window: one token per message waiting for its ack

	mu         sync.Mutex
	js         nats.JetStreamContext // nil while publishing with core NATS
	lookedUpAt time.Time             // the last stream lookup
	recheck    *recheck              // auto mode: the lookup after a failed attempt in progress
	recheckAt  time.Time             // when the last of those began
}

// recheck is one stream lookup shared by the sends whose attempt failed meanwhile.
type recheck struct {
	done chan struct{}
	gone bool // JetStream answered that the stream does not exist
}

// NewRealtimeService looks the bridge's stream up (one stream-info request) to choose between
// acknowledged JetStream publishing and core NATS. The connection stays the caller's.
func NewRealtimeService(ctx context.Context, nc *nats.Conn, opts Options) (*RealtimeService, error) {
	opts = opts.withDefaults()
	rt := &RealtimeService{nc: nc, opts: opts, slots: make(chan struct{}, opts.MaxInFlight)}
	switch opts.Mode {
	case ModeCore:
		return rt, nil
	case ModeAuto, ModeJetStream:
	default:
		return nil, fmt.Errorf("unknown mode %q (auto, jetstream or core)", opts.Mode)
	}
	found, err := rt.lookUp(ctx)
	if err != nil {
		return nil, err
	}
	if !found && opts.Mode == ModeJetStream {
		return nil, &Error{Code: "unavailable", Message: "stream " + opts.Stream + " not found (is the bridge's history on?)"}
	}
	return rt, nil
}

// lookUp asks JetStream for the stream; when it exists, sends go through JetStream from now on.
func (rt *RealtimeService) lookUp(ctx context.Context) (found bool, err error) {
	js, err := rt.nc.JetStream()
	if err != nil {
		return false, fmt.Errorf("jetstream context: %w", err)
	}
	_, err = js.StreamInfo(rt.opts.Stream, nats.Context(ctx))
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.lookedUpAt = time.Now()
	switch {
	case err == nil:
		rt.js = js
		return true, nil
	case errors.Is(err, nats.ErrStreamNotFound), errors.Is(err, nats.ErrJetStreamNotEnabled),
		errors.Is(err, nats.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		// A live-mode bridge (or no JetStream at all): nothing would acknowledge a publish.
		return false, nil
	default:
		return false, fmt.Errorf("looking up stream %s: %w", rt.opts.Stream, err)
	}
}

// jetStream returns the context to publish with, nil for core NATS. In auto mode without the
// stream it looks again at most every LookupInterval, so a bridge that turns its history on
// later is followed (and streamGone follows it turning history off).
func (rt *RealtimeService) jetStream(ctx context.Context) nats.JetStreamContext {
	rt.mu.Lock()
	js := rt.js
	due := js == nil && rt.opts.Mode == ModeAuto && time.Since(rt.lookedUpAt) >= rt.opts.LookupInterval
	if due {
		rt.lookedUpAt = time.Now() // one lookup at a time
	}
	rt.mu.Unlock()
	if !due {
		return js
	}
	lookup, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// A failed lookup keeps core NATS until the next one.
	if found, _ := rt.lookUp(lookup); !found {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.js
}

// streamGone is asked by a send whose JetStream attempt got "no responders" or, with timedOut,
// no acknowledgement in time, in auto mode: it looks the stream up again (one lookup at a time,
// shared by the sends waiting for it) and reports whether JetStream answered that the stream no
// longer exists (a bridge whose history was turned off); the service then publishes with core
// NATS. After "no responders", which a flood meets in numbers while JetStream elects a leader, at
// most one lookup a second; after a lost acknowledgement always one, since a subject somebody
// subscribes to (a live bridge) never gets "no responders": each retry would reach it again. A
// lookup without an answer (JetStream momentarily without a leader) changes nothing: the send
// keeps retrying.
func (rt *RealtimeService) streamGone(ctx context.Context, timedOut bool) bool {
	rt.mu.Lock()
	if rt.opts.Mode != ModeAuto {
		rt.mu.Unlock()
		return false
	}
	if rt.js == nil {
		// Another send's lookup switched to core NATS since this attempt began.
		rt.mu.Unlock()
		return true
	}
	c := rt.recheck
	if c == nil {
		if !timedOut && time.Since(rt.recheckAt) < time.Second {
			rt.mu.Unlock()
			return false
		}
		c = &recheck{done: make(chan struct{})}
		rt.recheck, rt.recheckAt = c, time.Now()
		// Not under one caller's context: the lookup is shared.
		go rt.runRecheck(c)
	}
	rt.mu.Unlock()
	select {
	case <-c.done:
		return c.gone
	case <-ctx.Done():
		return false
	}
}

func (rt *RealtimeService) runRecheck(c *recheck) {
	js, err := rt.nc.JetStream()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = js.StreamInfo(rt.opts.Stream, nats.Context(ctx))
		cancel()
	}
	var apiErr *nats.APIError
	gone := errors.Is(err, nats.ErrStreamNotFound) || (errors.As(err, &apiErr) && apiErr.Code == 404)
	rt.mu.Lock()
	if gone {
		rt.js = nil
		rt.lookedUpAt = time.Now() // the next lookup (back to JetStream) is LookupInterval away
	}
	c.gone = gone
	rt.recheck = nil
	rt.mu.Unlock()
	close(c.done)
}

// Mode tells how sends are published now: ModeJetStream (acknowledged) or ModeCore.
func (rt *RealtimeService) Mode() Mode {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.js != nil {
		return ModeJetStream
	}
	return ModeCore
}

// SendOption changes one send.
type SendOption func(*sendOptions)

type sendOptions struct{ msgID string }

// WithMsgID sets the Nats-Msg-Id: with the bridge's history on, JetStream stores a send
// retried with the same id once, and the bridge delivers it once. For several users each
// subject gets "<id>:<subject>" (the duplicate window is per stream, not per subject).
func WithMsgID(id string) SendOption {
	return func(o *sendOptions) { o.msgID = id }
}

// SendEventToUser publishes data as JSON on user.<userID>.<event>.
func (rt *RealtimeService) SendEventToUser(ctx context.Context, userID, event string, data any, opts ...SendOption) error {
	return rt.SendEventToUsers(ctx, []string{userID}, event, data, opts...)
}

// SendEventToUsers publishes once per distinct user id (order kept); every input is checked
// before anything is sent. In JetStream mode it returns once every subject is acknowledged.
func (rt *RealtimeService) SendEventToUsers(ctx context.Context, userIDs []string, event string, data any, opts ...SendOption) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	seen := make(map[string]bool, len(userIDs))
	subjects := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if err := checkUserID(id); err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			subjects = append(subjects, "user."+id+"."+event)
		}
	}
	return rt.publish(ctx, subjects, data, opts)
}

// BroadcastEvent publishes data on broadcast.<event>, for every connected user.
func (rt *RealtimeService) BroadcastEvent(ctx context.Context, event string, data any, opts ...SendOption) error {
	if err := checkEvent(event); err != nil {
		return err
	}
	return rt.publish(ctx, []string{"broadcast." + event}, data, opts)
}

func (rt *RealtimeService) publish(ctx context.Context, subjects []string, data any, opts []SendOption) error {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	payload, err := json.Marshal(data)
	if err != nil {
		return &Error{Code: "invalid_data", Message: "data is not one JSON value", Err: err}
	}
	if len(payload) > rt.opts.MaxEventBytes {
		return &Error{Code: "too_large", Message: fmt.Sprintf("data is %d bytes as JSON, over %d", len(payload), rt.opts.MaxEventBytes)}
	}
	if len(subjects) == 0 {
		return nil
	}
	js := rt.jetStream(ctx)
	msgs := make([]*nats.Msg, len(subjects))
	ids := make([]string, len(subjects))
	for i, subject := range subjects {
		msgs[i] = &nats.Msg{Subject: subject, Data: payload}
		switch {
		case o.msgID != "" && len(subjects) > 1:
			ids[i] = o.msgID + ":" + subject
		case o.msgID != "":
			ids[i] = o.msgID
		case js != nil:
			ids[i] = nuid.Next() // so that a retry after a lost acknowledgement is stored once
		}
	}

	if js == nil {
		for i, m := range msgs {
			if err := rt.publishCore(m, ids[i]); err != nil {
				return err
			}
		}
		return nil
	}

	// JetStream: every subject at once, each holding a slot of the window until its
	// acknowledgement, so a flood of sends is slowed down instead of queued without bound.
	ctx, cancel := context.WithTimeout(ctx, rt.opts.PublishTimeout)
	defer cancel()
	errs := make(chan error, len(msgs))
	for i, m := range msgs {
		select {
		case rt.slots <- struct{}{}:
		case <-ctx.Done():
			// Messages already started finish (or time out) on their own; report this one.
			errs <- &Error{Code: "timeout", Message: "no free slot in the in-flight window for " + m.Subject, Err: ctx.Err()}
			continue
		}
		// Only a caller's id would go along if this message ends up published with core NATS.
		callerID := ""
		if o.msgID != "" {
			callerID = ids[i]
		}
		go func(m *nats.Msg, id, callerID string) {
			defer func() { <-rt.slots }()
			errs <- rt.publishAcked(ctx, js, m, id, callerID)
		}(m, ids[i], callerID)
	}
	var first error
	for range msgs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// publishCore publishes m with core NATS: done when the client has the message (Flush confirms
// with a round trip). A caller's id still goes along: a bridge whose history is on deduplicates
// with it.
func (rt *RealtimeService) publishCore(m *nats.Msg, callerID string) error {
	// Fresh headers: a JetStream attempt before may have left its own id on m.
	m.Header = nil
	if callerID != "" {
		m.Header = nats.Header{nats.MsgIdHdr: []string{callerID}}
	}
	if err := rt.nc.PublishMsg(m); err != nil {
		return &Error{Code: "unavailable", Message: "publish on " + m.Subject, Err: err}
	}
	return nil
}

// publishAcked sends m through JetStream until it is acknowledged, again with the same
// Nats-Msg-Id after an attempt without an answer, until ctx ends. In auto mode, once the stream
// turns out to be gone, m goes out with core NATS instead (with callerID, the caller's id if any)
// after "no responders", and counts as sent after a lost acknowledgement.
func (rt *RealtimeService) publishAcked(ctx context.Context, js nats.JetStreamContext, m *nats.Msg, id, callerID string) error {
	backoff := 100 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, rt.opts.AckTimeout)
		// RetryAttempts(0): "no responders" is retried here, with the same backoff as a timeout.
		_, err := js.PublishMsg(m, nats.Context(attempt), nats.MsgId(id), nats.RetryAttempts(0))
		cancel()
		if err == nil {
			return nil // an acknowledgement of a duplicate counts too
		}
		var apiErr *nats.APIError
		if errors.As(err, &apiErr) {
			// JetStream answered and refused (too large, storage full...): retrying will not help.
			return &Error{Code: "unavailable", Message: "JetStream refused " + m.Subject, Err: err}
		}
		if !retryable(err) {
			return &Error{Code: "unavailable", Message: "publish on " + m.Subject, Err: err}
		}
		if timedOut := !noResponders(err); rt.streamGone(ctx, timedOut) {
			if timedOut {
				// The attempt went out as a plain message to the subject's subscribers (a live
				// bridge delivered it): sent, as a core publish would be; again would be twice.
				return nil
			}
			return rt.publishCore(m, callerID) // nobody got it
		}
		// Jitter keeps many senders from retrying in step.
		wait := backoff/2 + jitter(backoff)
		select {
		case <-ctx.Done():
			return &Error{Code: "timeout", Message: "no acknowledgement for " + m.Subject, Err: err}
		case <-time.After(wait):
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
}

// The backoff's jitter, from a source seeded per process (Go 1.19's global one is not).
var (
	jitterMu  sync.Mutex
	jitterSrc = rand.New(rand.NewSource(time.Now().UnixNano()))
)

func jitter(d time.Duration) time.Duration {
	jitterMu.Lock()
	defer jitterMu.Unlock()
	return time.Duration(jitterSrc.Int63n(int64(d)))
}

// retryable: no answer in time, or JetStream momentarily without a leader.
func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || noResponders(err)
}

// noResponders: nothing listens on the subject, a stream without a leader or no stream at all.
func noResponders(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrNoStreamResponse)
}

// Flush returns once everything published so far has reached the server (a round trip).
func (rt *RealtimeService) Flush(ctx context.Context) error {
	if err := rt.nc.FlushWithContext(ctx); err != nil {
		return &Error{Code: "unavailable", Message: "flush", Err: err}
	}
	return nil
}

// Presence is the bridge's answer to realtime.presence.<userId> (docs/protocol.md §4.2).
type Presence struct {
	UserID    string `json:"userId"`
	Connected bool   `json:"connected"`
	Streams   int    `json:"streams"`
	Clients   []struct {
		ID       string `json:"id"`
		Instance string `json:"instance"`
		Since    string `json:"since"`
	} `json:"clients"`
}

// GetPresence asks the bridges how many streams userID has open. No bridge answering is
// no_bridge: a service cannot tell "nobody is connected" from "no bridge runs".
func (rt *RealtimeService) GetPresence(ctx context.Context, userID string) (*Presence, error) {
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rt.opts.PresenceTimeout)
	defer cancel()
	reply, err := rt.nc.RequestWithContext(ctx, "realtime.presence."+userID, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded):
		return nil, &Error{Code: "no_bridge", Message: "no bridge answered the presence request for " + userID, Err: err}
	case err != nil:
		return nil, &Error{Code: "unavailable", Message: "presence request for " + userID, Err: err}
	}
	var p Presence
	if err := json.Unmarshal(reply.Data, &p); err != nil {
		return nil, fmt.Errorf("presence answer for %s: %w", userID, err)
	}
	return &p, nil
}

// GetConnectedClients returns the client ids of userID's open streams, oldest first.
func (rt *RealtimeService) GetConnectedClients(ctx context.Context, userID string) ([]string, error) {
	p, err := rt.GetPresence(ctx, userID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(p.Clients))
	for i, c := range p.Clients {
		ids[i] = c.ID
	}
	return ids, nil
}

// IsUserConnected tells whether userID has at least one open stream on any bridge.
func (rt *RealtimeService) IsUserConnected(ctx context.Context, userID string) (bool, error) {
	p, err := rt.GetPresence(ctx, userID)
	if err != nil {
		return false, err
	}
	return p.Connected, nil
}
