package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"

	_ "github.com/mattn/go-sqlite3" // the catalog's database/sql driver
)

// The catalog is a SQLite database (WAL journal: a killed process loses
// no committed transaction) that indexes what the segment files hold:
// targets and labels by id, each segment's model and time range, and every
// thumbnail by target and time. Embeddings never go through it.
const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets(
	id INTEGER PRIMARY KEY, camera TEXT NOT NULL, region TEXT NOT NULL, UNIQUE(camera, region));
CREATE TABLE IF NOT EXISTS labels(id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS segments(
	id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL,
	created_ns INTEGER NOT NULL, sealed INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
	bytes INTEGER NOT NULL DEFAULT 0, first_ns INTEGER NOT NULL DEFAULT 0, last_ns INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS thumbs(
	id INTEGER PRIMARY KEY, target INTEGER NOT NULL, time_ns INTEGER NOT NULL, seq INTEGER NOT NULL,
	seg INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL, UNIQUE(seg, off));
CREATE INDEX IF NOT EXISTS thumbs_by_time ON thumbs(target, time_ns);
`

type catalog struct {
	db   *sql.DB
	path string
}

func openCatalog(path string) (*catalog, error) {
	// The catalog must be a regular file (or absent): a symlink or a
	// device here would be followed by SQLite.
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One connection: the writer's transactions and a search's look-ups
	// are short, and the per-connection settings below then hold for all.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	c := &catalog{db: db, path: path}
	if err := c.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *catalog) init() error {
	// Checkpoint the journal every 100 pages (400 KiB) rather than 1000,
	// and cut it back after, so the catalog stays small beside max_bytes.
	if _, err := c.db.Exec(`PRAGMA wal_autocheckpoint=100; PRAGMA journal_size_limit=1048576`); err != nil {
		return err
	}
	if _, err := c.db.Exec(schema); err != nil {
		return err
	}
	var v string
	err := c.db.QueryRow(`SELECT value FROM meta WHERE key='schema'`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = c.db.Exec(`INSERT INTO meta(key, value) VALUES('schema', ?)`, strconv.Itoa(schemaVersion))
		return err
	case err != nil:
		return err
	case v != strconv.Itoa(schemaVersion):
		return fmt.Errorf("catalog schema version %.20q, this clipd reads %d", v, schemaVersion)
	}
	return nil
}

func (c *catalog) close() error { return c.db.Close() }

// segRow is a segment as the catalog knows it.
type segRow struct {
	id          uint64
	kind        byte
	model       string
	dim         int
	created     int64
	sealed      bool
	records     int64
	bytes       int64 // of the file, header included
	first, last int64
}

func (c *catalog) segments() ([]segRow, error) {
	rows, err := c.db.Query(`SELECT id, kind, model, dim, created_ns, sealed, records, bytes, first_ns, last_ns FROM segments ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []segRow
	for rows.Next() {
		var r segRow
		var kind string
		if err := rows.Scan(&r.id, &kind, &r.model, &r.dim, &r.created, &r.sealed, &r.records, &r.bytes, &r.first, &r.last); err != nil {
			return nil, err
		}
		if len(kind) != 1 || (kind[0] != kindVectors && kind[0] != kindThumbnails) {
			return nil, fmt.Errorf("segment %d: kind %.10q", r.id, kind)
		}
		r.kind = kind[0]
		out = append(out, r)
	}
	return out, rows.Err()
}

func (c *catalog) insertSegment(r segRow) (uint64, error) {
	var res sql.Result
	var err error
	if r.id != 0 {
		res, err = c.db.Exec(`INSERT INTO segments(id, kind, model, dim, created_ns) VALUES(?, ?, ?, ?, ?)`,
			r.id, string(r.kind), r.model, r.dim, r.created)
	} else {
		res, err = c.db.Exec(`INSERT INTO segments(kind, model, dim, created_ns) VALUES(?, ?, ?, ?)`,
			string(r.kind), r.model, r.dim, r.created)
	}
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	return uint64(id), err
}

func (c *catalog) sealSegment(id uint64, records, bytes, first, last int64) error {
	_, err := c.db.Exec(`UPDATE segments SET sealed=1, records=?, bytes=?, first_ns=?, last_ns=? WHERE id=?`, records, bytes, first, last, id)
	return err
}

// deleteSegment forgets a segment and the thumbnails it held.
func (c *catalog) deleteSegment(id uint64) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM thumbs WHERE seg=?`, id); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM segments WHERE id=?`, id); err != nil {
		return err
	}
	return tx.Commit()
}

func (c *catalog) targets() (map[uint32]Target, error) {
	rows, err := c.db.Query(`SELECT id, camera, region FROM targets`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[uint32]Target)
	for rows.Next() {
		var id int64
		var t Target
		if err := rows.Scan(&id, &t.Camera, &t.Region); err != nil {
			return nil, err
		}
		if id <= 0 || id > 1<<31 {
			return nil, fmt.Errorf("target id %d", id)
		}
		out[uint32(id)] = t
	}
	return out, rows.Err()
}

func (c *catalog) labels() (map[uint32]string, error) {
	rows, err := c.db.Query(`SELECT id, text FROM labels`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[uint32]string)
	for rows.Next() {
		var id int64
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			return nil, err
		}
		if id <= 0 || id > 1<<31 {
			return nil, fmt.Errorf("label id %d", id)
		}
		out[uint32(id)] = s
	}
	return out, rows.Err()
}

// intern adds targets and labels in one transaction and returns their ids
// in order.
func (c *catalog) intern(targets []Target, labels []string) ([]uint32, []uint32, error) {
	tx, err := c.db.Begin()
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	tids := make([]uint32, len(targets))
	for i, t := range targets {
		var id int64
		if err := tx.QueryRow(`INSERT INTO targets(camera, region) VALUES(?, ?)
			ON CONFLICT(camera, region) DO UPDATE SET camera=excluded.camera RETURNING id`, t.Camera, t.Region).Scan(&id); err != nil {
			return nil, nil, err
		}
		tids[i] = uint32(id)
	}
	lids := make([]uint32, len(labels))
	for i, l := range labels {
		var id int64
		if err := tx.QueryRow(`INSERT INTO labels(text) VALUES(?)
			ON CONFLICT(text) DO UPDATE SET text=excluded.text RETURNING id`, l).Scan(&id); err != nil {
			return nil, nil, err
		}
		lids[i] = uint32(id)
	}
	return tids, lids, tx.Commit()
}

// thumbRow is one stored thumbnail.
type thumbRow struct {
	id     int64
	target uint32
	time   int64
	seq    uint64
	seg    uint64
	off    int64 // of the entry, in the file
	length int
}

func (c *catalog) insertThumbs(rows []thumbRow) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.Prepare(`INSERT OR IGNORE INTO thumbs(target, time_ns, seq, seg, off, len) VALUES(?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.Exec(r.target, r.time, int64(r.seq), r.seg, r.off, r.length); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (c *catalog) thumbCount() (int64, error) {
	var n int64
	err := c.db.QueryRow(`SELECT count(*) FROM thumbs`).Scan(&n)
	return n, err
}

func (c *catalog) thumbsIn(seg uint64) (int64, error) {
	var n int64
	err := c.db.QueryRow(`SELECT count(*) FROM thumbs WHERE seg=?`, seg).Scan(&n)
	return n, err
}

// nearestThumb is the target's thumbnail closest in time to t, if any.
func (c *catalog) nearestThumb(ctx context.Context, target uint32, t int64) (thumbRow, bool, error) {
	var best thumbRow
	found := false
	for _, q := range []string{
		`SELECT id, time_ns, seq, seg, off, len FROM thumbs WHERE target=? AND time_ns<=? ORDER BY time_ns DESC LIMIT 1`,
		`SELECT id, time_ns, seq, seg, off, len FROM thumbs WHERE target=? AND time_ns>? ORDER BY time_ns ASC LIMIT 1`,
	} {
		var r thumbRow
		var seq int64
		err := c.db.QueryRowContext(ctx, q, target, t).Scan(&r.id, &r.time, &seq, &r.seg, &r.off, &r.length)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return best, false, err
		}
		r.target, r.seq = target, uint64(seq)
		if !found || absDiff(r.time, t) < absDiff(best.time, t) {
			best, found = r, true
		}
	}
	return best, found, nil
}

func (c *catalog) thumb(ctx context.Context, id int64) (thumbRow, bool, error) {
	var r thumbRow
	var seq int64
	err := c.db.QueryRowContext(ctx, `SELECT id, target, time_ns, seq, seg, off, len FROM thumbs WHERE id=?`, id).
		Scan(&r.id, &r.target, &r.time, &seq, &r.seg, &r.off, &r.length)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	r.seq = uint64(seq)
	return r, err == nil, err
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
