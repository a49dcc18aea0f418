// Package headscale is roomnet's narrow client of a Headscale server's gRPC
// v1 API: users, pre-auth keys, nodes and policy. The same Client serves an
// embedded Headscale (over its unix socket) and an external one (over TCP
// with an API key); a shard is just another Client. It owns no state and
// never decides anything about rooms.
package headscale

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	v1 "github.com/juanfont/headscale/gen/go/headscale/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNotFound reports that the user, key or node does not exist.
var ErrNotFound = errors.New("headscale: not found")

// User is a Headscale user; roomnet maps one room onto one user.
type User struct {
	ID        uint64
	Name      string
	CreatedAt time.Time
}

// PreAuthKey is a key a node registers with.
type PreAuthKey struct {
	ID         uint64
	Key        string // secret; never log it
	UserID     uint64
	Used       bool
	Ephemeral  bool
	Reusable   bool
	Expiration time.Time
	CreatedAt  time.Time
}

// Node is a registered WireGuard node.
type Node struct {
	ID           uint64
	Name         string
	UserID       uint64
	UserName     string
	IPs          []netip.Addr
	Online       bool
	LastSeen     time.Time
	PreAuthKeyID uint64 // 0 when the node did not join with a key
	NodeKey      string
	// Hostname is what the node calls itself; Name (its given name) is
	// what Headscale made unique of it.
	Hostname  string
	Expiry    time.Time // zero: the key does not expire
	CreatedAt time.Time
}

// Client talks to one Headscale server.
type Client struct {
	conn *grpc.ClientConn
	api  v1.HeadscaleServiceClient
}

// DialSocket connects to Headscale's unix socket (embedded mode; the socket
// has no auth, so it must live in a 0700 directory).
func DialSocket(path string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing headscale socket: %w", err)
	}
	return &Client{conn: conn, api: v1.NewHeadscaleServiceClient(conn)}, nil
}

// DialRemote connects to an external Headscale's gRPC listener with an API key.
func DialRemote(address, apiKey string, allowInsecure bool) (*Client, error) {
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if allowInsecure {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{token: apiKey, insecure: allowInsecure}),
	)
	if err != nil {
		return nil, fmt.Errorf("dialing headscale %s: %w", address, err)
	}
	return &Client{conn: conn, api: v1.NewHeadscaleServiceClient(conn)}, nil
}

type bearer struct {
	token    string
	insecure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return !b.insecure }

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && (s.Code() == codes.NotFound || notFoundMessage(s.Message())) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notFoundMessage recognises Headscale v0.29.3's answers about something
// that is gone which it sends with code Unknown: "… not found" and, for an
// ephemeral node it already removed after the node logged out, "node no
// longer exists in NodeStore".
func notFoundMessage(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "not found") || strings.Contains(msg, "no longer exists")
}

// Health reports whether Headscale and its database answer.
func (c *Client) Health(ctx context.Context) error {
	r, err := c.api.Health(ctx, &v1.HealthRequest{})
	if err != nil {
		return wrap("checking headscale health", err)
	}
	if !r.GetDatabaseConnectivity() {
		return errors.New("checking headscale health: database unreachable")
	}
	return nil
}

// CreateUser creates a user named name.
func (c *Client) CreateUser(ctx context.Context, name string) (User, error) {
	r, err := c.api.CreateUser(ctx, &v1.CreateUserRequest{Name: name})
	if err != nil {
		return User{}, wrap("creating headscale user", err)
	}
	return User{ID: r.GetUser().GetId(), Name: r.GetUser().GetName()}, nil
}

// ListUsers lists every user.
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	r, err := c.api.ListUsers(ctx, &v1.ListUsersRequest{})
	if err != nil {
		return nil, wrap("listing headscale users", err)
	}
	out := make([]User, 0, len(r.GetUsers()))
	for _, u := range r.GetUsers() {
		user := User{ID: u.GetId(), Name: u.GetName()}
		if u.GetCreatedAt() != nil {
			user.CreatedAt = u.GetCreatedAt().AsTime()
		}
		out = append(out, user)
	}
	return out, nil
}

// DeleteUser deletes a user; Headscale refuses while it still has nodes.
func (c *Client) DeleteUser(ctx context.Context, id uint64) error {
	_, err := c.api.DeleteUser(ctx, &v1.DeleteUserRequest{Id: id})
	return wrap("deleting headscale user", err)
}

// CreatePreAuthKey mints a single-use key for user that expires after ttl.
func (c *Client) CreatePreAuthKey(ctx context.Context, userID uint64, ephemeral bool, ttl time.Duration) (PreAuthKey, error) {
	r, err := c.api.CreatePreAuthKey(ctx, &v1.CreatePreAuthKeyRequest{
		User:       userID,
		Reusable:   false,
		Ephemeral:  ephemeral,
		Expiration: timestamppb.New(time.Now().Add(ttl)),
	})
	if err != nil {
		return PreAuthKey{}, wrap("creating pre-auth key", err)
	}
	return keyFromProto(r.GetPreAuthKey()), nil
}

// ListPreAuthKeys lists every key of every user.
func (c *Client) ListPreAuthKeys(ctx context.Context) ([]PreAuthKey, error) {
	r, err := c.api.ListPreAuthKeys(ctx, &v1.ListPreAuthKeysRequest{})
	if err != nil {
		return nil, wrap("listing pre-auth keys", err)
	}
	out := make([]PreAuthKey, 0, len(r.GetPreAuthKeys()))
	for _, k := range r.GetPreAuthKeys() {
		out = append(out, keyFromProto(k))
	}
	return out, nil
}

// ExpirePreAuthKey makes a key unusable at once.
func (c *Client) ExpirePreAuthKey(ctx context.Context, id uint64) error {
	_, err := c.api.ExpirePreAuthKey(ctx, &v1.ExpirePreAuthKeyRequest{Id: id})
	return wrap("expiring pre-auth key", err)
}

// DeletePreAuthKey removes a key.
func (c *Client) DeletePreAuthKey(ctx context.Context, id uint64) error {
	_, err := c.api.DeletePreAuthKey(ctx, &v1.DeletePreAuthKeyRequest{Id: id})
	return wrap("deleting pre-auth key", err)
}

// ListNodes lists the nodes of user (all nodes when user is empty).
func (c *Client) ListNodes(ctx context.Context, user string) ([]Node, error) {
	r, err := c.api.ListNodes(ctx, &v1.ListNodesRequest{User: user})
	if err != nil {
		return nil, wrap("listing nodes", err)
	}
	out := make([]Node, 0, len(r.GetNodes()))
	for _, n := range r.GetNodes() {
		node := Node{
			ID:       n.GetId(),
			Name:     n.GetGivenName(),
			UserID:   n.GetUser().GetId(),
			UserName: n.GetUser().GetName(),
			Online:   n.GetOnline(),
			NodeKey:  n.GetNodeKey(),
			Hostname: n.GetName(),
		}
		if e := n.GetExpiry(); e != nil && e.AsTime().Unix() > 0 {
			node.Expiry = e.AsTime()
		}
		if t := n.GetCreatedAt(); t != nil {
			node.CreatedAt = t.AsTime()
		}
		if n.GetLastSeen() != nil {
			node.LastSeen = n.GetLastSeen().AsTime()
		}
		if k := n.GetPreAuthKey(); k != nil {
			node.PreAuthKeyID = k.GetId()
		}
		for _, s := range n.GetIpAddresses() {
			if a, err := netip.ParseAddr(s); err == nil {
				node.IPs = append(node.IPs, a)
			}
		}
		out = append(out, node)
	}
	return out, nil
}

// ExpireNode expires a node's key now: the node itself stops (its client
// needs a new login) and its peers drop it.
func (c *Client) ExpireNode(ctx context.Context, id uint64) error {
	_, err := c.api.ExpireNode(ctx, &v1.ExpireNodeRequest{NodeId: id, Expiry: timestamppb.Now()})
	return wrap("expiring node", err)
}

// DeleteNode removes a node; its peers drop it from their netmaps.
func (c *Client) DeleteNode(ctx context.Context, id uint64) error {
	_, err := c.api.DeleteNode(ctx, &v1.DeleteNodeRequest{NodeId: id})
	return wrap("deleting node", err)
}

// GetPolicy returns the policy document ("" when none is set).
func (c *Client) GetPolicy(ctx context.Context) (string, error) {
	r, err := c.api.GetPolicy(ctx, &v1.GetPolicyRequest{})
	if err != nil {
		if s, ok := status.FromError(err); ok && (s.Code() == codes.NotFound || s.Code() == codes.Unknown) {
			return "", nil
		}
		return "", wrap("getting policy", err)
	}
	return r.GetPolicy(), nil
}

// SetPolicy replaces the policy document.
func (c *Client) SetPolicy(ctx context.Context, policy string) error {
	_, err := c.api.SetPolicy(ctx, &v1.SetPolicyRequest{Policy: policy})
	return wrap("setting policy", err)
}

func keyFromProto(k *v1.PreAuthKey) PreAuthKey {
	out := PreAuthKey{
		ID:        k.GetId(),
		Key:       k.GetKey(),
		UserID:    k.GetUser().GetId(),
		Used:      k.GetUsed(),
		Ephemeral: k.GetEphemeral(),
		Reusable:  k.GetReusable(),
	}
	if k.GetExpiration() != nil {
		out.Expiration = k.GetExpiration().AsTime()
	}
	if k.GetCreatedAt() != nil {
		out.CreatedAt = k.GetCreatedAt().AsTime()
	}
	return out
}
