// Package api serves the control plane's REST API on echo: it
// authenticates, decodes strictly, calls the service, publishes the events
// mutations return, and maps domain errors to statuses and stable codes.
// It holds no rules of its own.
package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/roomnet/roomnet/controlplane"
	"github.com/roomnet/roomnet/controlplane/apispec"
	"github.com/roomnet/roomnet/controlplane/events"
	"github.com/roomnet/roomnet/controlplane/limits"
	"github.com/roomnet/roomnet/controlplane/relays"
	"github.com/roomnet/roomnet/controlplane/service"
	"github.com/roomnet/roomnet/controlplane/store"
	"github.com/roomnet/roomnet/roomnet"
)

// Options configures the API.
type Options struct {
	Service       *service.Service
	Logger        *slog.Logger
	Registry      *prometheus.Registry
	Ready         func(ctx context.Context) error // nil error: ready for traffic
	MaxBodyBytes  int64                           // default 64 KiB
	AuthPerMinute int                             // login/register attempts per client address
	// LoginFailures wrong passwords per account within LoginFailureWindow
	// (token bucket); defaults 10 and 10 minutes.
	LoginFailures      int
	LoginFailureWindow time.Duration
	// ClientIP names a request's client address for the per-address
	// limits; nil: the peer address (ClientIP(nil)).
	ClientIP       func(*http.Request) string
	RequestsPerSec float64 // per client address, all routes; default 50
	// VerifyPerSec is POST /verify's rate per client address (a relay):
	// default 100, with a bucket of 10 seconds' worth.
	VerifyPerSec float64
	// Limiter keeps every rate limit above; nil: this process's memory
	// (one node). Give the nodes of a deployment one shared engine
	// (limits.Redis behind limits.Fallback) and they share each budget.
	Limiter    limits.Limiter
	Relays     *relays.Registry // nil: no relay registration
	RelayToken string           // shared secret relays heartbeat with; empty: registration off

	// Moderator moderates chat for staff; nil: the chat routes answer 404.
	Moderator Moderator
	// Events streams membership events to the admin panel; nil: no stream.
	Events *events.Hub
	// Overview gives the dashboard's figures over the last window (0:
	// every kept sample); nil: no dashboard figures.
	Overview func(ctx context.Context, window time.Duration) (roomnet.Overview, error)
	// Origins are the origins besides the request's own host that browser
	// sessions may come from (the public URL's, behind a proxy).
	Origins []string
	// SecureCookies marks session cookies Secure (an https public URL).
	SecureCookies bool
	// Stop ends long-lived responses (the event stream) for a shutdown.
	Stop <-chan struct{}
	// Degraded, when set and ready, reports a part that is down while the
	// server still serves (Redis of a multi-node deployment): /healthz
	// then answers 200 {"status":"degraded","reason"}.
	Degraded func(ctx context.Context) error
}

// Moderator is what the admin routes need of chat.
type Moderator interface {
	DeleteMessage(ctx context.Context, conv string, seq uint64) error
	Mute(ctx context.Context, userID uint64, until time.Time, reason string) error
	Unmute(ctx context.Context, userID uint64) error
	MutedUntil(userID uint64) (time.Time, bool)
	Announce(ctx context.Context, conv, text string) (uint64, error)
}

type server struct {
	svc           *service.Service
	log           *slog.Logger
	relays        *relays.Registry
	relayToken    string
	mod           Moderator
	events        *events.Hub
	overview      func(ctx context.Context, window time.Duration) (roomnet.Overview, error)
	origins       []string
	secureCookies bool
	stop          <-chan struct{}
	limits        *rateLimits
}

// Echo context keys: the request's token and when it expires.
const (
	ctxToken   = "token"
	ctxExpires = "expires"
)

// New returns the echo instance serving the API and /healthz. Metrics are
// served apart (MetricsHandler), on a listener of their own.
func New(o Options) *echo.Echo {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.RequestsPerSec == 0 {
		o.RequestsPerSec = 50
	}
	if o.VerifyPerSec == 0 {
		o.VerifyPerSec = 100
	}
	if o.AuthPerMinute == 0 {
		o.AuthPerMinute = 30
	}
	if o.LoginFailures == 0 {
		o.LoginFailures = 10
	}
	if o.LoginFailureWindow == 0 {
		o.LoginFailureWindow = 10 * time.Minute
	}
	if o.ClientIP == nil {
		o.ClientIP = ClientIP(nil)
	}
	s := &server{svc: o.Service, log: o.Logger, relays: o.Relays, relayToken: o.RelayToken,
		mod: o.Moderator, events: o.Events, overview: o.Overview, origins: o.Origins, secureCookies: o.SecureCookies, stop: o.Stop}
	s.limits = newRateLimits(s, o)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = o.ClientIP // c.RealIP, the key of every per-address limit
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.Recover())
	e.Use(metricsMiddleware(o.Registry))
	e.Use(middleware.BodyLimit(strconv.FormatInt(o.MaxBodyBytes, 10) + "B"))
	e.Use(securityHeaders)

	e.GET("/healthz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
		defer cancel()
		if err := o.Ready(ctx); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		}
		if o.Degraded != nil {
			if err := o.Degraded(ctx); err != nil {
				return c.JSON(http.StatusOK, map[string]string{"status": "degraded", "reason": err.Error()})
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})

	// DERP admission for the relays, which call it on every connection:
	// public, so limited per address through the shared limiter with a
	// budget of its own that a relay's reconnect wave fits in (the
	// embedded relay's calls all come from the loopback).
	e.POST("/verify", s.verify, s.limits.perAddress(limitVerify, s.limits.verify))

	v1 := e.Group(roomnet.APIVersionPrefix, s.limits.perAddress(limitAPI, s.limits.api))
	authLimit := s.limits.perAddress(limitAuth, s.limits.auth)
	v1.POST("/auth/register", s.register, authLimit, s.sameOriginOnly)
	v1.POST("/auth/login", s.login, authLimit, s.sameOriginOnly)
	v1.POST("/auth/session", s.createSession, authLimit, s.sameOriginOnly)
	v1.GET(apispec.Path, echo.WrapHandler(apispec.Handler()))

	if s.relays != nil {
		v1.GET("/derpmap", s.derpMap)
		if s.relayToken != "" {
			v1.POST("/relays/heartbeat", s.relayHeartbeat, s.authenticateRelay)
		}
	}

	a := v1.Group("", s.authenticate, authorize) // who may call what: roles.go
	if s.relays != nil {
		a.GET("/relays", s.listRelays)
	}
	a.POST("/auth/logout", s.logout)
	a.GET("/auth/session", s.session)
	a.DELETE("/auth/session", s.deleteSession)
	a.GET("/me", s.me)
	a.GET("/me/rooms", s.myRooms)
	a.POST("/rooms/:id/paths", s.reportPaths)
	a.GET("/users", s.users)
	a.POST("/users/:username/ban", s.ban)
	a.POST("/users/:username/unban", s.unban)
	a.GET("/rooms", s.listRooms)
	a.POST("/rooms", s.createRoom)
	a.GET("/rooms/:id", s.getRoom)
	a.DELETE("/rooms/:id", s.closeRoom)
	a.POST("/rooms/:id/join", s.joinRoom, authLimit) // passwords are guessable
	a.POST("/rooms/:id/key", s.renewKey)
	a.POST("/rooms/:id/leave", s.leave)
	a.POST("/rooms/:id/kick", s.kick)
	a.POST("/rooms/:id/invite", s.rotateInvite)
	a.GET("/rooms/:id/members", s.members)
	a.GET("/invites/:code", s.invite)
	a.POST("/invites/:code/join", s.joinInvite, authLimit) // codes are guessable

	adm := a.Group("/admin")
	adm.GET("/overview", s.adminOverview)
	adm.GET("/rooms", s.adminRooms)
	adm.GET("/shards", s.adminShards)
	adm.GET("/nodes", s.adminNodes)
	adm.POST("/nodes/:shard/:id/expire", s.adminExpireNode)
	adm.DELETE("/nodes/:shard/:id", s.adminDeleteNode)
	adm.GET("/chat/history", s.adminChatHistory)
	adm.GET("/events", s.adminEvents)
	adm.GET("/audit", s.adminAudit)
	adm.POST("/users/:username/role", s.adminSetRole)
	adm.POST("/users/:username/mute", s.adminMute)
	adm.DELETE("/users/:username/mute", s.adminUnmute)
	adm.GET("/users/:username", s.adminProfile)
	adm.POST("/users/:username/purge-messages", s.adminPurgeMessages)
	adm.POST("/chat/delete", s.adminDeleteMessage)
	adm.POST("/chat/announce", s.adminAnnounce)
	return e
}

func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(code, format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

var domainErrors = []struct {
	err    error
	status int
	code   string
}{
	{cp.ErrInvalid, http.StatusBadRequest, roomnet.CodeBadRequest},
	{cp.ErrUnauthorized, http.StatusUnauthorized, roomnet.CodeUnauthorized},
	{cp.ErrBanned, http.StatusForbidden, roomnet.CodeBanned},
	{cp.ErrForbidden, http.StatusForbidden, roomnet.CodeForbidden},
	{cp.ErrNotFound, http.StatusNotFound, roomnet.CodeNotFound},
	{cp.ErrUsernameTaken, http.StatusConflict, roomnet.CodeUsernameTaken},
	{cp.ErrRoomFull, http.StatusConflict, roomnet.CodeRoomFull},
	{cp.ErrAlreadyMember, http.StatusConflict, roomnet.CodeAlreadyMember},
	{cp.ErrNotMember, http.StatusConflict, roomnet.CodeNotMember},
	{cp.ErrRoomClosed, http.StatusGone, roomnet.CodeRoomClosed},
	{cp.ErrWrongPassword, http.StatusForbidden, roomnet.CodeWrongPassword},
	{cp.ErrKicked, http.StatusForbidden, roomnet.CodeKicked},
	{cp.ErrTooManyRooms, http.StatusConflict, roomnet.CodeTooManyRooms},
	{cp.ErrSignupDisabled, http.StatusForbidden, roomnet.CodeSignupDisabled},
	{cp.ErrUnavailable, http.StatusServiceUnavailable, roomnet.CodeUnavailable},
	{cp.ErrCapacity, http.StatusServiceUnavailable, roomnet.CodeCapacity},
}

func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, code, msg := http.StatusInternalServerError, roomnet.CodeInternal, "internal error"
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		status, code, msg = ae.status, ae.code, ae.msg
	case errors.As(err, &he):
		status, msg = he.Code, fmt.Sprint(he.Message)
		switch he.Code {
		case http.StatusRequestEntityTooLarge:
			code = roomnet.CodeBodyTooLarge
		case http.StatusNotFound:
			code = roomnet.CodeNotFound
		case http.StatusMethodNotAllowed:
			code = roomnet.CodeBadRequest
		case http.StatusTooManyRequests:
			code = roomnet.CodeRateLimited
		default:
			code = roomnet.CodeBadRequest
		}
	default:
		matched := false
		for _, d := range domainErrors {
			if errors.Is(err, d.err) {
				status, code, msg, matched = d.status, d.code, err.Error(), true
				break
			}
		}
		if !matched {
			s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		} else if code == roomnet.CodeCapacity {
			c.Response().Header().Set("Retry-After", "30")
			msg = "the server takes no new rooms right now: every coordination server is at its capacity; try again later (joining an existing room still works)"
		} else if status == http.StatusServiceUnavailable {
			s.log.Warn("request failed: coordination server", "path", c.Path(), "err", err)
			msg = "the coordination server is unavailable; try again shortly"
		}
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	detail := roomnet.ErrorDetail{Code: code, Message: msg}
	var be *cp.BanError
	if errors.As(err, &be) {
		detail.Until, detail.Reason = be.Until, be.Reason
	}
	_ = c.JSON(status, roomnet.ErrorBody{Error: detail})
}

// decode reads exactly one JSON value into v, strictly: member names match
// the field names exactly (encoding/json would take {"NAME":…} for
// "name"), unknown and duplicate members are refused, and so are invalid
// UTF-8 and trailing data.
func decode(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: roomnet.CodeBodyTooLarge, msg: "request body too large"}
		}
		return err
	}
	return DecodeBody(body, v)
}

// DecodeBody is decode's parsing of a request body, on its own for tests
// and fuzzing.
func DecodeBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest(roomnet.CodeInvalidJSON, "a JSON body is required")
	}
	if err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return badRequest(roomnet.CodeInvalidJSON, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// decodeOptional is decode for endpoints whose body may be empty.
func decodeOptional(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	return decode(c, v)
}

func bearer(c echo.Context) string {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// authenticate admits a bearer token or a browser session cookie; a
// cookie-authenticated request that changes state must pass the CSRF
// check.
func (s *server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, viaCookie := requestToken(c.Request())
		u, expires, err := s.svc.AuthenticateSession(c.Request().Context(), token)
		if err != nil {
			if errors.Is(err, cp.ErrUnauthorized) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="roomnet"`)
			}
			return err
		}
		if viaCookie && !safeMethod(c.Request().Method) {
			if err := s.checkCSRF(c, token); err != nil {
				return err
			}
		}
		c.Set("user", u)
		c.Set(ctxToken, token)
		c.Set(ctxExpires, expires)
		return next(c)
	}
}

func actor(c echo.Context) cp.User { return c.Get("user").(cp.User) }

func userView(u cp.User) roomnet.User {
	v := roomnet.User{ID: u.ID, Username: u.Username, Role: u.Role, CreatedAt: u.CreatedAt, Banned: u.Banned(time.Now())}
	if v.Banned {
		v.BanUntil, v.BanReason = u.BanUntil, u.BanReason
	}
	return v
}

func roomView(r store.RoomSummary, withInvite bool) roomnet.Room {
	v := roomnet.Room{
		ID: r.ID, Name: r.Name, Game: r.Game, MaxPlayers: r.MaxPlayers, Public: r.Public,
		HasPassword: r.PasswordHash != nil, Host: r.HostName, Members: r.Members,
		CreatedAt: r.CreatedAt, ClosedAt: r.ClosedAt, Shard: r.Shard,
	}
	if r.Ports != "" {
		v.Ports = strings.Split(r.Ports, ",")
	}
	if withInvite {
		v.InviteCode, v.InviteLink = r.InviteCode, InviteLink(r.InviteCode)
	}
	return v
}

// InviteLink is the roomnet:// link a launcher opens for an invite code.
func InviteLink(code string) string { return "roomnet://join/" + code }

func grantView(g service.Grant) roomnet.JoinGrant {
	return roomnet.JoinGrant{RoomID: g.RoomID, LoginServer: g.LoginServer, AuthKey: g.AuthKey, ExpiresAt: g.ExpiresAt}
}
