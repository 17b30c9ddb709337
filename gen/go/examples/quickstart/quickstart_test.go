package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/chatmesh/chatmesh/gen/go/chatmesh/events/v1"
	historyv1 "github.com/chatmesh/chatmesh/gen/go/chatmesh/history/v1"
	sessionv1 "github.com/chatmesh/chatmesh/gen/go/chatmesh/session/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const password = "correct horse battery"

// gateway is the address of a running mesh's gateway, from CHATMESH_GATEWAY; the test is
// skipped without one.
func gateway(t *testing.T) string {
	t.Helper()
	addr := strings.TrimSpace(os.Getenv("CHATMESH_GATEWAY"))
	if addr == "" {
		t.Skip("CHATMESH_GATEWAY is unset: run `make test-sdk`, which starts a mesh and points these tests at its gateway")
	}
	return addr
}

// uniqueName is a username no other test run has taken.
func uniqueName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:12])
}

func connect(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := dial(gateway(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func register(ctx context.Context, t *testing.T, sessions sessionv1.SessionServiceClient, prefix string) (string, loggedIn) {
	t.Helper()
	name := uniqueName(prefix)
	reg, err := sessions.Register(ctx, &sessionv1.RegisterRequest{Username: name, Password: password, DeviceName: "go test"})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return name, loggedIn{reg.GetUserId(), reg.GetDeviceId(), reg.GetTokens().GetAccessToken()}
}

func TestMessageSentFromGoReachesThePeersStreamAndHistory(t *testing.T) {
	conn := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sessions := sessionv1.NewSessionServiceClient(conn)
	history := historyv1.NewHistoryServiceClient(conn)

	annName, _ := register(ctx, t, sessions, "goann")
	_, bob := register(ctx, t, sessions, "gobob")

	// Bob's device holds its event stream open; the first event says it is live.
	stream, err := sessions.Connect(bob.Authorize(ctx), &sessionv1.ConnectRequest{})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first event: %v", err)
	}
	if first.GetEvent().GetKeepAlive() == nil {
		t.Fatalf("first event is %v, want KeepAlive", first.GetEvent())
	}

	// Ann logs in on another device (the account exists, so no Register).
	ann, err := loginOrRegister(ctx, sessions, annName, password, "go test laptop")
	if err != nil {
		t.Fatal(err)
	}
	created, err := history.CreateConversation(ann.Authorize(ctx), &historyv1.CreateConversationRequest{
		Kind: historyv1.ConversationKind_CONVERSATION_KIND_DIRECT, PeerUserId: bob.UserID,
	})
	if err != nil {
		t.Fatalf("create conversation: %v", err)
	}
	conversationID := created.GetConversation().GetConversationId()
	text := "hi bob, from Go " + rand.Text()
	sent, err := history.SendMessage(ann.Authorize(ctx), &historyv1.SendMessageRequest{
		ConversationId: conversationID, ClientMessageId: rand.Text(), Text: text,
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := sent.GetMessage(); got.GetText() != text || got.GetSequence() != 1 || got.GetAuthorUserId() != ann.UserID {
		t.Fatalf("stored message = %v, want the text as sequence 1 by ann", got)
	}

	// It arrives on Bob's stream, once, as a MessageCreated...
	var created1 *eventsv1.MessageCreated
	for created1 == nil {
		got, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the message on bob's stream: %v", err)
		}
		created1 = got.GetEvent().GetMessageCreated()
		if created1 != nil && got.GetSequence() == 0 {
			t.Errorf("MessageCreated has stream sequence 0, want a replayable (non-zero) one")
		}
	}
	if m := created1.GetMessage(); m.GetMessageId() != sent.GetMessage().GetMessageId() || m.GetText() != text {
		t.Fatalf("bob's stream got %v, want message %s with %q", m, sent.GetMessage().GetMessageId(), text)
	}

	// ...and Bob reads it back from history.
	page, err := history.ListMessages(bob.Authorize(ctx), &historyv1.ListMessagesRequest{ConversationId: conversationID})
	if err != nil {
		t.Fatalf("list messages: %v", err)
	}
	if len(page.GetMessages()) != 1 || page.GetMessages()[0].GetText() != text {
		t.Fatalf("bob's ListMessages = %v, want exactly the one message", page.GetMessages())
	}
}

func TestQuickstartRegistersOnFirstRunLogsInOnTheNextAndPrintsTheMessage(t *testing.T) {
	conn := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bobName, bob := register(ctx, t, sessionv1.NewSessionServiceClient(conn), "gobob")
	cfg := config{gateway: gateway(t), user: uniqueName("goann"), password: password, device: "go test"}

	// The first run names the peer by username, the second by user id.
	var conversations []string
	for i, peer := range []string{bobName, bob.UserID} {
		text := fmt.Sprintf("run %d", i+1)
		cfg.peer, cfg.text = peer, text
		var out bytes.Buffer
		if err := run(ctx, cfg, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out.String())
		}
		printed := out.String()
		if !strings.Contains(printed, "logged in as "+cfg.user) || !strings.Contains(printed, ": "+text+"\n") {
			t.Fatalf("run %d printed %q, want the login and the sent text", i+1, printed)
		}
		if want := fmt.Sprintf("sent #%d ", i+1); !strings.Contains(printed, want) {
			t.Fatalf("run %d printed %q, want %q", i+1, printed, want)
		}
		conversations = append(conversations, strings.Fields(strings.Split(printed, "conversation ")[1])[0])
	}
	if conversations[0] != conversations[1] {
		t.Fatalf("two runs used conversations %v, want the same one-to-one conversation", conversations)
	}
}

func TestQuickstartNamesAPeerThatDoesNotExist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nobody := uniqueName("gonobody")

	err := run(ctx, config{gateway: gateway(t), user: uniqueName("goann"), password: password, peer: nobody, text: "x", device: "go test"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no user \""+nobody+"\"") {
		t.Fatalf("run with an unknown peer: %v, want it to say there is no such user", err)
	}
}

func TestQuickstartWithAWrongPasswordSaysUnauthenticated(t *testing.T) {
	conn := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, bob := register(ctx, t, sessionv1.NewSessionServiceClient(conn), "gobob")

	err := run(ctx, config{gateway: gateway(t), user: name, password: "not the password", peer: bob.UserID, text: "x", device: "go test"}, &bytes.Buffer{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("run with a wrong password: %v, want UNAUTHENTICATED", err)
	}
}
