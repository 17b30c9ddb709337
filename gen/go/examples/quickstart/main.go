// Command quickstart logs in to a chatmesh gateway (registering the account if it does
// not exist yet), opens a one-to-one conversation with a peer, sends a message and
// prints it as stored.
//
//	go run ./examples/quickstart -gateway 127.0.0.1:8080 -user ann -password 'correct horse' -peer bob
//
// The gateway speaks plaintext gRPC on loopback (`make up`); every RPC but Register,
// Login and Refresh carries `authorization: Bearer <access token>`.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	historyv1 "github.com/chatmesh/chatmesh/gen/go/chatmesh/history/v1"
	sessionv1 "github.com/chatmesh/chatmesh/gen/go/chatmesh/session/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// config is what the flags say.
type config struct {
	gateway  string
	user     string
	password string
	peer     string
	text     string
	device   string
	timeout  time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.gateway, "gateway", "127.0.0.1:8080", "gateway address (host:port), plaintext gRPC")
	flag.StringVar(&cfg.user, "user", "", "username; registered on first use (3-32 of a-z 0-9 _ . -, starting with a letter)")
	flag.StringVar(&cfg.password, "password", "", "password (8-256 characters)")
	flag.StringVar(&cfg.peer, "peer", "", "who to message: a username, or a user id (UUID)")
	flag.StringVar(&cfg.text, "text", "hello from the chatmesh Go quickstart", "message text (1-4000 characters)")
	flag.StringVar(&cfg.device, "device", "go quickstart", "device name shown in the account's device list")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "deadline for the whole run")
	flag.Parse()
	if cfg.user == "" || cfg.password == "" || cfg.peer == "" {
		fmt.Fprintln(os.Stderr, "quickstart: -user, -password and -peer are required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run does what the command says, printing to out.
func run(ctx context.Context, cfg config, out io.Writer) error {
	conn, err := dial(cfg.gateway)
	if err != nil {
		return err
	}
	defer conn.Close()

	sessions := sessionv1.NewSessionServiceClient(conn)
	session, err := loginOrRegister(ctx, sessions, cfg.user, cfg.password, cfg.device)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "logged in as %s (user id %s)\n", cfg.user, session.UserID)

	ctx = session.Authorize(ctx)
	peerID, err := findUser(ctx, sessions, cfg.peer)
	if err != nil {
		return err
	}
	history := historyv1.NewHistoryServiceClient(conn)
	created, err := history.CreateConversation(ctx, &historyv1.CreateConversationRequest{
		Kind:       historyv1.ConversationKind_CONVERSATION_KIND_DIRECT,
		PeerUserId: peerID,
	})
	if err != nil {
		return fmt.Errorf("create conversation with %s: %w", cfg.peer, err)
	}
	conversationID := created.GetConversation().GetConversationId()
	fmt.Fprintf(out, "conversation %s\n", conversationID)

	sent, err := history.SendMessage(ctx, &historyv1.SendMessageRequest{
		ConversationId:  conversationID,
		ClientMessageId: rand.Text(), // a retry with the same id is stored once
		Text:            cfg.text,
	})
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	msg := sent.GetMessage()
	fmt.Fprintf(out, "sent #%d (message id %s): %s\n", msg.GetSequence(), msg.GetMessageId(), msg.GetText())
	return nil
}

// dial opens a client connection to the gateway; gRPC connects lazily, on the first call.
func dial(gateway string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(gateway, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", gateway, err)
	}
	return conn, nil
}

// findUser returns the user id of a username or user id, as session.LookupUsers finds it.
func findUser(ctx context.Context, sessions sessionv1.SessionServiceClient, who string) (string, error) {
	req := &sessionv1.LookupUsersRequest{Usernames: []string{who}}
	if uuidPattern.MatchString(who) {
		req = &sessionv1.LookupUsersRequest{UserIds: []string{who}}
	}
	found, err := sessions.LookupUsers(ctx, req)
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", who, err)
	}
	if len(found.GetUsers()) == 0 {
		return "", fmt.Errorf("no user %q: they register first (the quickstart with their -user does that)", who)
	}
	return found.GetUsers()[0].GetUserId(), nil
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// loggedIn is a logged-in device: who it is and its access token.
type loggedIn struct {
	UserID      string
	DeviceID    string
	AccessToken string
}

// Authorize returns ctx carrying the access token for every RPC made with it.
func (s loggedIn) Authorize(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.AccessToken)
}

// loginOrRegister logs the device in, creating the account first if Login does not know
// it. Login never tells an unknown username from a wrong password (both UNAUTHENTICATED),
// so Register decides: ALREADY_EXISTS means the account exists and the password is wrong.
func loginOrRegister(ctx context.Context, sessions sessionv1.SessionServiceClient, user, password, device string) (loggedIn, error) {
	login, err := sessions.Login(ctx, &sessionv1.LoginRequest{Username: user, Password: password, DeviceName: device})
	if err == nil {
		return loggedIn{login.GetUserId(), login.GetDeviceId(), login.GetTokens().GetAccessToken()}, nil
	}
	if status.Code(err) != codes.Unauthenticated {
		return loggedIn{}, fmt.Errorf("login as %s: %w", user, err)
	}
	reg, regErr := sessions.Register(ctx, &sessionv1.RegisterRequest{Username: user, Password: password, DeviceName: device})
	if status.Code(regErr) == codes.AlreadyExists {
		return loggedIn{}, fmt.Errorf("login as %s: %w", user, err)
	}
	if regErr != nil {
		return loggedIn{}, errors.Join(fmt.Errorf("login as %s: %w", user, err), fmt.Errorf("register %s: %w", user, regErr))
	}
	return loggedIn{reg.GetUserId(), reg.GetDeviceId(), reg.GetTokens().GetAccessToken()}, nil
}
