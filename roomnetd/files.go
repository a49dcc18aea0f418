package roomnetd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// secureDataDir makes dir (created if missing) and everything in it
// private to this user: directories 0700, files without group and other
// bits. It tightens a data directory an older version or an operator left
// open; the databases hold password hashes, tokens' hashes and direct
// messages in plain text. Symbolic links are left alone.
func secureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while we walk
				return nil
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		mode := info.Mode().Perm()
		want := mode &^ 0o077
		if d.IsDir() {
			want = 0o700
		}
		if mode == want {
			return nil
		}
		if err := os.Chmod(path, want); err != nil {
			return fmt.Errorf("securing data dir: %w", err)
		}
		return nil
	})
}

// createPrivate creates an empty SQLite database file 0600 unless it
// exists, so that SQLite, which gives its WAL and shared-memory files the
// database file's mode, never creates any of them readable by others.
// DSNs that are URIs are left to SQLite.
func createPrivate(dsn string) error {
	if dsn == "" || strings.HasPrefix(dsn, "file:") || strings.Contains(dsn, "?") {
		return nil
	}
	f, err := os.OpenFile(dsn, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("creating database file: %w", err)
	}
	return f.Close()
}
