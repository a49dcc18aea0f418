package service

import (
	_ "embed"
	"strings"
	"sync"

	cp "github.com/roomnet/roomnet/controlplane"
)

// Credential rules. Errors are ErrInvalid with a message that names the
// rule; docs/api.md lists the rules.
const (
	minPassword     = 8
	maxPassword     = 72 // bcrypt's limit
	minRoomPassword = 6
)

// commonPasswordsText is a short list of the passwords most often found in
// breaches (8 bytes or longer: shorter ones fail the length rule anyway).
//
//go:embed common-passwords.txt
var commonPasswordsText string

var commonPasswords = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(commonPasswordsText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[strings.ToLower(l)] = true
		}
	}
	return m
})

// validatePassword applies the account password rules.
func validatePassword(username, password string) error {
	if len(password) < minPassword || len(password) > maxPassword {
		return cp.Invalid("password: %d to %d bytes", minPassword, maxPassword)
	}
	lower, name := strings.ToLower(password), strings.ToLower(username)
	if name != "" && strings.Contains(lower, name) {
		rest := strings.ReplaceAll(lower, name, "")
		if len(rest) < minPassword || commonPasswords()[rest] {
			return cp.Invalid("password: must not be the username, or the username with a few characters added")
		}
	}
	if commonPasswords()[lower] {
		return cp.Invalid("password: too common (it is on the list of the most used passwords)")
	}
	return nil
}

// validateRoomPassword applies the room password rules; empty is no password.
func validateRoomPassword(password string) error {
	if password != "" && (len(password) < minRoomPassword || len(password) > maxPassword) {
		return cp.Invalid("password: a room password has %d to %d bytes", minRoomPassword, maxPassword)
	}
	return nil
}

// reservedNames are what no player may pass for. A name is refused when,
// read with lookalike characters as letters (0→o, 1 and l→i, 3→e, 4 and
// @→a, 5 and $→s, 7→t, rn→m), it is one of them, one of them followed by
// digits, or one of them followed by a separator and anything
// ("admin_", "admin.", "Adm1n", "r00t", "moderator-2", "system.bot").
var reservedNames = []string{
	"admin", "administrator", "root", "moderator", "mod", "system", "sysadmin", "sysop",
	"superuser", "support", "staff", "official", "roomnet",
}

var lookalikes = strings.NewReplacer("rn", "m", "0", "o", "1", "i", "l", "i", "3", "e", "4", "a", "@", "a", "5", "s", "$", "s", "7", "t")

func isSeparator(r rune) bool { return r == '_' || r == '.' || r == '-' }

// reservedName reports whether username passes for a reserved name.
func reservedName(username string) bool {
	lower := strings.ToLower(username)
	reserved := map[string]bool{}
	for _, r := range reservedNames {
		reserved[lookalikes.Replace(r)] = true
	}
	parts := strings.FieldsFunc(lower, isSeparator)
	if len(parts) == 0 {
		return false
	}
	for _, cand := range []string{strings.Join(parts, ""), parts[0]} {
		for _, c := range []string{cand, strings.TrimRight(cand, "0123456789")} {
			if c != "" && reserved[lookalikes.Replace(c)] {
				return true
			}
		}
	}
	return false
}

// validUsername applies the username pattern every account follows.
func validUsername(username string) error {
	if !usernameRE.MatchString(username) {
		return cp.Invalid("username: 3 to 32 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
	}
	return nil
}

// validateUsername applies the username rules of self-registration.
func validateUsername(username string) error {
	if err := validUsername(username); err != nil {
		return err
	}
	if reservedName(username) {
		return cp.Invalid("username: reserved (it reads as admin, root, moderator, system or another staff name)")
	}
	return nil
}
