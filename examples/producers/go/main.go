// Realtime Bridge example producer in Go (nats.go).
//
//	go run . [NATS_URL] [USER_ID]        # or NATS_URL=... USER_ID=... go run .
//
// The original system's server side with NATS as the realtime service: the port
// IRealtimeService is RealtimeService (realtime.go: subjects user.<userId>.<event> and
// broadcast.<event>), and the use cases SendRealtimeMessage, NotifyTransactionCompleted and
// NotifyTyping are functions. One scenario for USER_ID: "go-service is typing..." for TYPING_MS
// (1500 ms), a chat message, a completed CREDIT of 12.49 on account acc-<USER_ID>, and a
// notification. When the bridge keeps history (stream REALTIME), every event is published
// through JetStream and acknowledged. Exit code 69 when NATS is not reachable, 64 on a bad
// argument.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

const (
	exUsage       = 64
	exUnavailable = 69
)

// ---------------------------------------------------------------------------------------
// The DTOs (realtime.dto.ts).

// RealtimeMessageDto is a chat message.
type RealtimeMessageDto struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversationId"`
	SenderID       string `json:"senderId"`
	RecipientID    string `json:"recipientId"`
	Content        string `json:"content"`
	CreatedAt      string `json:"createdAt"`
}

// RealtimeTransactionDto is a completed transaction; Type is CREDIT or DEBIT.
type RealtimeTransactionDto struct {
	TransactionID string  `json:"transactionId"`
	AccountID     string  `json:"accountId"`
	UserID        string  `json:"userId"`
	Amount        float64 `json:"amount"`
	Type          string  `json:"type"`
	Status        string  `json:"status"`
	CompletedAt   string  `json:"completedAt"`
}

// RealtimeNotificationDto is an entry of the bell.
type RealtimeNotificationDto struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Title     string `json:"title"`
	Message   string `json:"message"`
	Read      bool   `json:"read"`
	CreatedAt string `json:"createdAt"`
}

type typingDto struct {
	ConversationID string `json:"conversationId"`
	UserID         string `json:"userId"`
}

// ---------------------------------------------------------------------------------------
// The use cases.

// SendRealtimeMessage is SendRealtimeMessageUseCase: message_new to the recipient.
func SendRealtimeMessage(ctx context.Context, rt *RealtimeService, conversationID, senderID, recipientID, content string) error {
	dto := RealtimeMessageDto{
		ID:             newID("msg"),
		ConversationID: conversationID,
		SenderID:       senderID,
		RecipientID:    recipientID,
		Content:        content,
		CreatedAt:      now(),
	}
	// The message id doubles as the NATS message id: a retried publish is delivered once.
	return rt.SendEventToUser(ctx, recipientID, "message_new", dto, WithMsgID(dto.ID))
}

// NotifyTransactionCompleted is NotifyTransactionCompletedUseCase: transaction_completed to
// the account's owner.
func NotifyTransactionCompleted(ctx context.Context, rt *RealtimeService, transactionID, accountID, userID string, amount float64, kind string) error {
	dto := RealtimeTransactionDto{
		TransactionID: transactionID,
		AccountID:     accountID,
		UserID:        userID,
		Amount:        amount,
		Type:          kind,
		Status:        "COMPLETED",
		CompletedAt:   now(),
	}
	return rt.SendEventToUser(ctx, userID, "transaction_completed", dto)
}

// NotifyTyping is NotifyTypingUseCase: typing_start or typing_stop to the recipient.
func NotifyTyping(ctx context.Context, rt *RealtimeService, conversationID, userID, recipientID string, isTyping bool) error {
	event := "typing_stop"
	if isTyping {
		event = "typing_start"
	}
	return rt.SendEventToUser(ctx, recipientID, event, typingDto{ConversationID: conversationID, UserID: userID})
}

// SendNotification sends a notification for the bell.
func SendNotification(ctx context.Context, rt *RealtimeService, userID, title, message string) error {
	dto := RealtimeNotificationDto{ID: newID("notif"), Type: "info", Title: title, Message: message, CreatedAt: now()}
	return rt.SendEventToUser(ctx, userID, "notification", dto)
}

// ---------------------------------------------------------------------------------------

func now() string {
	return time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func newID(prefix string) string {
	return prefix + "-go-" + nuid.Next()
}

// setting returns argument n (1-based), else the environment variable, else def.
func setting(n int, env, def string) string {
	if len(os.Args) > n && os.Args[n] != "" {
		return os.Args[n]
	}
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

func main() {
	os.Exit(run())
}

func run() int {
	natsURL := setting(1, "NATS_URL", "nats://127.0.0.1:4222")
	userID := setting(2, "USER_ID", "42")
	typingMs, err := strconv.ParseUint(setting(3, "TYPING_MS", "1500"), 10, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer: TYPING_MS must be a number of milliseconds")
		return exUsage
	}
	if checkUserID(userID) != nil {
		fmt.Fprintf(os.Stderr, "producer: USER_ID %q must be 1 to 128 characters of [A-Za-z0-9_-]\n", userID)
		return exUsage
	}

	// Fail fast (no retry loop) with a message a person can act on.
	nc, err := nats.Connect(natsURL, nats.Name("realtime-bridge-example-go"), nats.Timeout(3*time.Second), nats.NoReconnect())
	if err != nil {
		fmt.Fprintf(os.Stderr, "NATS not reachable at %s: is nats-server running? (%v)\n", natsURL, err)
		return exUnavailable
	}
	defer nc.Close()

	// Bounds the whole run: the pause, every acknowledgement, the final flush.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(typingMs)*time.Millisecond+time.Minute)
	defer cancel()
	if err := scenario(ctx, nc, userID, time.Duration(typingMs)*time.Millisecond); err != nil {
		fmt.Fprintf(os.Stderr, "producer: publishing to %s failed: %v\n", natsURL, err)
		return exUnavailable
	}
	return 0
}

func scenario(ctx context.Context, nc *nats.Conn, userID string, typing time.Duration) error {
	lookup, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rt, err := NewRealtimeService(lookup, nc, Options{})
	if err != nil {
		return err
	}
	via := "core NATS"
	if rt.Mode() == ModeJetStream {
		via = "JetStream, acknowledged"
	}
	const me, conversation = "go-service", "demo"

	// The port's isUserConnected, answered by the bridges. Informative only: events for a user
	// without an open stream are still kept when the bridge has history.
	if ids, err := rt.GetConnectedClients(ctx, userID); err != nil {
		fmt.Printf("presence              → %v\n", err)
	} else {
		fmt.Printf("presence              → user %s has %d open stream(s)\n", userID, len(ids))
	}

	if err := NotifyTyping(ctx, rt, conversation, me, userID, true); err != nil {
		return fmt.Errorf("typing_start: %w", err)
	}
	if err := rt.Flush(ctx); err != nil {
		return err
	}
	fmt.Printf("typing_start          → user.%s.typing_start (%s is typing for %d ms, via %s)\n", userID, me, typing.Milliseconds(), via)
	select {
	case <-time.After(typing):
	case <-ctx.Done():
		return ctx.Err()
	}

	if err := SendRealtimeMessage(ctx, rt, conversation, me, userID, "Hello from Go (nats.go)"); err != nil {
		return fmt.Errorf("message_new: %w", err)
	}
	if err := NotifyTyping(ctx, rt, conversation, me, userID, false); err != nil {
		return fmt.Errorf("typing_stop: %w", err)
	}
	fmt.Printf("message_new           → user.%s.message_new\n", userID)

	if err := NotifyTransactionCompleted(ctx, rt, newID("tx"), "acc-"+userID, userID, 12.49, "CREDIT"); err != nil {
		return fmt.Errorf("transaction_completed: %w", err)
	}
	fmt.Printf("transaction_completed → CREDIT 12.49 on acc-%s\n", userID)

	if err := SendNotification(ctx, rt, userID, "Cashback received", "Go service credited 12.49 € (cashback)"); err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	fmt.Printf("notification          → user.%s.notification\n", userID)
	return rt.Flush(ctx)
}
