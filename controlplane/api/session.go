package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/roomnet/roomnet/roomnet"
)

// Browser sessions. A browser signs in with POST /auth/session and gets
// its bearer token as an HttpOnly, SameSite=Strict cookie that script
// cannot read. Requests that authenticate with the cookie and change
// state must carry the session's CSRF token in X-CSRF-Token (derived from
// the cookie, so only a page that was handed it knows it) and, when the
// browser names an origin, come from this site's origin. Bearer-token
// clients (CLI, launchers) are not affected: nothing sends their token
// by itself.
const (
	// SessionCookie names the session cookie.
	SessionCookie = "roomnet_session"
	// CSRFHeader carries the CSRF token of a cookie session.
	CSRFHeader = "X-CSRF-Token"
)

// CSRFToken is the CSRF token of a session token.
func CSRFToken(sessionToken string) string {
	h := sha256.Sum256([]byte("roomnet-csrf\x00" + sessionToken))
	return base64.RawURLEncoding.EncodeToString(h[:24])
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// SameOrigin reports whether a browser request comes from this site:
// its Origin (when sent) is the request's own host or one of allowed,
// and Sec-Fetch-Site (when sent) does not say cross-site. A request with
// neither header is not from a browser page's script, which sends them.
func SameOrigin(r *http.Request, allowed []string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(origin, a) {
			return true
		}
	}
	return false
}

var errCSRF = &apiError{status: http.StatusForbidden, code: roomnet.CodeCSRF, msg: "cross-site request refused: missing or wrong X-CSRF-Token, or a foreign Origin"}

// checkCSRF guards a cookie-authenticated request that changes state.
func (s *server) checkCSRF(c echo.Context, token string) error {
	r := c.Request()
	if !SameOrigin(r, s.origins) {
		return errCSRF
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(CSRFToken(token))) != 1 {
		return errCSRF
	}
	return nil
}

// sameOriginOnly refuses browser requests from other sites (login CSRF).
func (s *server) sameOriginOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !SameOrigin(c.Request(), s.origins) {
			return errCSRF
		}
		return next(c)
	}
}

func (s *server) setSessionCookie(c echo.Context, token string, expires time.Time) {
	c.SetCookie(&http.Cookie{
		Name: SessionCookie, Value: token, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires).Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.secureCookies || c.Request().TLS != nil,
	})
}

// createSession signs a browser in: the token goes into the cookie only.
func (s *server) createSession(c echo.Context) error {
	token, u, exp, err := s.credentialsLogin(c)
	if err != nil {
		return err
	}
	s.setSessionCookie(c, token, exp)
	return c.JSON(http.StatusOK, roomnet.Session{User: userView(u), CSRFToken: CSRFToken(token), ExpiresAt: exp})
}

// session tells a page who is signed in and its CSRF token.
func (s *server) session(c echo.Context) error {
	tok, _ := c.Get(ctxToken).(string)
	return c.JSON(http.StatusOK, roomnet.Session{User: userView(actor(c)), CSRFToken: CSRFToken(tok)})
}

// deleteSession signs a browser out: the token is revoked, the cookie cleared.
func (s *server) deleteSession(c echo.Context) error {
	tok, _ := c.Get(ctxToken).(string)
	if err := s.svc.Logout(c.Request().Context(), actor(c), tok); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.secureCookies || c.Request().TLS != nil})
	return c.NoContent(http.StatusNoContent)
}

// requestToken returns the request's bearer token or, failing that, its
// session cookie.
func requestToken(r *http.Request) (token string, viaCookie bool) {
	if t, ok := strings.CutPrefix(r.Header.Get(echo.HeaderAuthorization), "Bearer "); ok {
		return strings.TrimSpace(t), false
	}
	if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
		return ck.Value, true
	}
	return "", false
}

// CookieWebSocket lets a browser open the chat WebSocket with its session
// cookie: a same-origin upgrade carrying the cookie is handed on with the
// token as its bearer; a cookie from a foreign origin (cross-site
// WebSocket hijacking) is refused. Upgrades with a bearer token or an auth
// frame pass unchanged.
func CookieWebSocket(next http.Handler, allowedOrigins []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, viaCookie := requestToken(r); viaCookie {
			if r.Header.Get("Origin") == "" || !SameOrigin(r, allowedOrigins) {
				http.Error(w, `{"error":{"code":"csrf_failed","message":"cross-site WebSocket refused"}}`, http.StatusForbidden)
				return
			}
			r = r.Clone(r.Context())
			r.Header.Set(echo.HeaderAuthorization, "Bearer "+token)
		}
		next.ServeHTTP(w, r)
	})
}
