package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/mattn/go-sqlite3" // the catalog's database/sql driver
)

// The catalog is a SQLite database (WAL journal: a killed process loses
// no committed transaction) that indexes what the segment files hold:
// targets and labels by id, each segment's model and time range, and every
// thumbnail by target and time. Embeddings never go through it.
//
// Version 2 gives targets, labels and thumbnails AUTOINCREMENT ids, so
// that an id is never given twice, not even after its row went: segment
// records hold target and label ids only, and a browser keeps a
// thumbnail's picture by its id. A target or label whose row was lost
// while segments still hold its id (a catalog deleted or replaced) gets a
// placeholder row, camera or text NULL, which keeps the id taken.
// Version 1 catalogs are migrated in place, their ids kept.
const schemaVersion = 2

const schemaV2 = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE targets(
	id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT, region TEXT NOT NULL, UNIQUE(camera, region));
CREATE TABLE labels(id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS segments(
	id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL,
	created_ns INTEGER NOT NULL, sealed INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
	bytes INTEGER NOT NULL DEFAULT 0, first_ns INTEGER NOT NULL DEFAULT 0, last_ns INTEGER NOT NULL DEFAULT 0);
CREATE TABLE thumbs(
	id INTEGER PRIMARY KEY AUTOINCREMENT, target INTEGER NOT NULL, time_ns INTEGER NOT NULL, seq INTEGER NOT NULL,
	seg INTEGER NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL, UNIQUE(seg, off));
CREATE INDEX thumbs_by_time ON thumbs(target, time_ns);
`

// schemaV1 is version 1's schema. Version 1 ran it statement by
// statement, so a catalog of it may lack its last tables: migrateV1 runs
// it first.
const schemaV1 = `
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

// migrateV1 moves version 1's tables (no AUTOINCREMENT on targets, labels
// and thumbs) aside, creates version 2's and copies the rows, ids kept.
const migrateV1 = schemaV1 + `
DROP INDEX IF EXISTS thumbs_by_time;
ALTER TABLE targets RENAME TO targets_v1;
ALTER TABLE labels RENAME TO labels_v1;
ALTER TABLE thumbs RENAME TO thumbs_v1;
` + schemaV2 + `
INSERT INTO targets(id, camera, region) SELECT id, camera, region FROM targets_v1;
INSERT INTO labels(id, text) SELECT id, text FROM labels_v1;
INSERT INTO thumbs(id, target, time_ns, seq, seg, off, len) SELECT id, target, time_ns, seq, seg, off, len FROM thumbs_v1;
DROP TABLE targets_v1;
DROP TABLE labels_v1;
DROP TABLE thumbs_v1;
`

// maxCatalogID bounds target and label ids. The store gives them (one per
// target and per distinct top label, a few dozen in practice), and a
// filtered search makes a table of one byte per target id: a catalog
// holding larger ones is damaged or hostile, and its rows are ignored.
const maxCatalogID = 1 << 22

// driverName is go-sqlite3 with the catalog's per-connection settings
// applied to every connection it opens (the DSN carries the others), so
// that they hold even if database/sql replaces the connection.
const driverName = "sqlite3_clipd_history"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		// Checkpoint the journal every 100 pages (400 KiB) rather than
		// 1000, and cut it back after, so the catalog stays small beside
		// max_bytes.
		for _, p := range []string{`PRAGMA wal_autocheckpoint=100`, `PRAGMA journal_size_limit=1048576`} {
			if _, err := c.Exec(p, nil); err != nil {
				return err
			}
		}
		return nil
	}})
}

type catalog struct {
	db   *sql.DB
	path string
	// migrated is set when Open found a version 1 catalog: its ids were
	// interned without a synced commit, so the store checks every
	// segment's ids against it once.
	migrated bool
}

func openCatalog(path string) (*catalog, error) {
	// The catalog and its journal must be regular files (or absent): a
	// symlink or a device here would be followed by SQLite.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if st, err := os.Lstat(p); err == nil && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	// NORMAL: a commit is synced at the next checkpoint, not at once. A
	// power loss may then roll back the last commits; intern and reserve,
	// whose ids go into segment records, sync theirs (durably).
	q.Set("_synchronous", "NORMAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	db, err := sql.Open(driverName, "file:"+url.PathEscape(path)+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	// One connection, never closed for age or idleness: the writer's
	// transactions and a search's look-ups are short and take turns, and
	// durably's synchronous=FULL is then the connection's that commits.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	c := &catalog{db: db, path: path}
	if err := c.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// init creates a new catalog, migrates a version 1 one, or checks that it
// is of this version, each in one transaction.
func (c *catalog) init() error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	has := func(table string) (bool, error) {
		var n int
		err := tx.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?`, table).Scan(&n)
		return n > 0, err
	}
	var v string
	hasMeta, err := has("meta")
	if err != nil {
		return err
	}
	if hasMeta {
		err = tx.QueryRow(`SELECT value FROM meta WHERE key='schema'`).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
	}
	hasTargets, err := has("targets")
	if err != nil {
		return err
	}
	switch {
	case v == "" && !hasTargets:
		_, err = tx.Exec(schemaV2)
	case v == "1" || v == "" && hasTargets:
		// Version 1 wrote its tables before its version row: tables
		// without the row are version 1's too.
		if _, err = tx.Exec(migrateV1); err == nil {
			c.migrated = true
		}
	case v == strconv.Itoa(schemaVersion):
		return nil
	default:
		return fmt.Errorf("catalog schema version %.20q, this clipd reads 1 and %d", v, schemaVersion)
	}
	if err != nil {
		return err
	}
	// Thumbnail ids start at the clock's microseconds, so that a catalog
	// made anew (the old one lost) gives none a browser may still hold
	// the picture of: fewer than one thumbnail a microsecond were made
	// under the old one.
	if err := raiseSequence(tx, "thumbs", time.Now().UnixMicro()); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT OR REPLACE INTO meta(key, value) VALUES('schema', ?)`, strconv.Itoa(schemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}

// raiseSequence makes table's next AUTOINCREMENT id larger than n.
func raiseSequence(tx *sql.Tx, table string, n int64) error {
	res, err := tx.Exec(`UPDATE sqlite_sequence SET seq=max(seq, ?) WHERE name=?`, n, table)
	if err != nil {
		return err
	}
	if k, err := res.RowsAffected(); err != nil || k > 0 {
		return err
	}
	_, err = tx.Exec(`INSERT INTO sqlite_sequence(name, seq) VALUES(?, ?)`, table, n)
	return err
}

func (c *catalog) close() error { return c.db.Close() }

// durably runs fn in a transaction whose commit is synced to disk before
// it returns (synchronous=FULL for it): ids it gives are written into
// segment records next, and a power loss must not roll them back and have
// them given again.
func (c *catalog) durably(fn func(tx *sql.Tx) error) error {
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=FULL`); err != nil {
		return err
	}
	defer conn.ExecContext(ctx, `PRAGMA synchronous=NORMAL`)
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

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
	// insane says which value is out of range, if one is: the row is not
	// to be trusted, and the file is read as if the catalog did not know
	// it.
	insane string
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
		var id, dim, sealed int64
		var kind string
		if err := rows.Scan(&id, &kind, &r.model, &dim, &r.created, &sealed, &r.records, &r.bytes, &r.first, &r.last); err != nil {
			return nil, err
		}
		switch {
		case id <= 0:
			r.insane = fmt.Sprintf("id %d", id)
		case len(kind) != 1 || (kind[0] != kindVectors && kind[0] != kindThumbnails):
			r.insane = fmt.Sprintf("kind %.10q", kind)
		case dim < 0 || dim > maxDim || len(r.model) > maxModelLen:
			r.insane = fmt.Sprintf("dimension %d, model hash of %d bytes", dim, len(r.model))
		case sealed != 0 && sealed != 1:
			r.insane = fmt.Sprintf("sealed %d", sealed)
		case r.records < 0 || r.records > maxSegmentFile || r.bytes < 0 || r.bytes > maxSegmentFile:
			r.insane = fmt.Sprintf("%d records in %d bytes", r.records, r.bytes)
		default:
			r.kind = kind[0]
		}
		r.id, r.dim, r.sealed = uint64(id), int(dim), sealed == 1
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

// reserveSegments makes every new segment id larger than n: a segment
// file of that id exists (one the catalog lost, or one that failed
// validation), and a new segment must never be given its name.
func (c *catalog) reserveSegments(n uint64) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := raiseSequence(tx, "segments", int64(n)); err != nil {
		return err
	}
	return tx.Commit()
}

func (c *catalog) sealSegment(id uint64, kind byte, records, bytes, first, last int64) error {
	_, err := c.db.Exec(`UPDATE segments SET sealed=1, records=?, bytes=?, first_ns=?, last_ns=? WHERE id=? AND kind=?`,
		records, bytes, first, last, id, string(kind))
	return err
}

// deleteSegment forgets a segment and, for a thumbnail segment, the
// thumbnails it held. The kind must match: a file of the other kind may
// carry the same id (one the catalog never knew), and its deletion must
// not take this segment's rows.
func (c *catalog) deleteSegment(id uint64, kind byte) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.Exec(`DELETE FROM segments WHERE id=? AND kind=?`, id, string(kind))
	if err != nil {
		return err
	}
	if _, err := res.RowsAffected(); err != nil {
		return err
	}
	// Only a thumbnail segment has thumbnails, and only one file of that
	// kind can have the id (its name).
	if kind == kindThumbnails {
		if _, err := tx.Exec(`DELETE FROM thumbs WHERE seg=?`, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// forgetSegmentRow deletes a row found out of range, and the thumbnails
// indexed under its id; its file, if any, is read through and indexed
// again.
func (c *catalog) forgetSegmentRow(id uint64) error {
	tx, err := c.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM segments WHERE id=?`, int64(id)); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM thumbs WHERE seg=?`, int64(id)); err != nil {
		return err
	}
	return tx.Commit()
}

// names are the catalog's targets or labels by id. lost holds the ids of
// placeholders (a row kept for an id whose name was lost); ignored counts
// rows whose id is out of range.
type names[T any] struct {
	byID    map[uint32]T
	lost    map[uint32]bool
	ignored int
}

// lostName is how a target or label whose name the catalog lost is shown.
func lostName(id uint32) string { return fmt.Sprintf("(unknown #%d)", id) }

func (c *catalog) targets() (names[Target], error) {
	out := names[Target]{byID: make(map[uint32]Target), lost: make(map[uint32]bool)}
	rows, err := c.db.Query(`SELECT id, camera, region FROM targets`)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var camera sql.NullString
		var t Target
		if err := rows.Scan(&id, &camera, &t.Region); err != nil {
			return out, err
		}
		if id <= 0 || id > maxCatalogID {
			out.ignored++
			continue
		}
		if !camera.Valid {
			out.lost[uint32(id)] = true
			t = Target{Camera: lostName(uint32(id))}
		} else {
			t.Camera = camera.String
		}
		out.byID[uint32(id)] = t
	}
	return out, rows.Err()
}

func (c *catalog) labels() (names[string], error) {
	out := names[string]{byID: make(map[uint32]string), lost: make(map[uint32]bool)}
	rows, err := c.db.Query(`SELECT id, text FROM labels`)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var s sql.NullString
		if err := rows.Scan(&id, &s); err != nil {
			return out, err
		}
		if id <= 0 || id > maxCatalogID {
			out.ignored++
			continue
		}
		if !s.Valid {
			out.lost[uint32(id)] = true
			s.String = lostName(uint32(id))
		}
		out.byID[uint32(id)] = s.String
	}
	return out, rows.Err()
}

// intern adds targets and labels in one durable transaction and returns
// their ids in order.
func (c *catalog) intern(targets []Target, labels []string) ([]uint32, []uint32, error) {
	tids := make([]uint32, len(targets))
	lids := make([]uint32, len(labels))
	err := c.durably(func(tx *sql.Tx) error {
		checked := func(what string, id int64) (uint32, error) {
			if id <= 0 || id > maxCatalogID {
				return 0, fmt.Errorf("%s id %d is beyond the %d this store gives", what, id, maxCatalogID)
			}
			return uint32(id), nil
		}
		for i, t := range targets {
			var id int64
			if err := tx.QueryRow(`INSERT INTO targets(camera, region) VALUES(?, ?)
				ON CONFLICT(camera, region) DO UPDATE SET camera=excluded.camera RETURNING id`, t.Camera, t.Region).Scan(&id); err != nil {
				return err
			}
			var err error
			if tids[i], err = checked("target", id); err != nil {
				return err
			}
		}
		for i, l := range labels {
			var id int64
			if err := tx.QueryRow(`INSERT INTO labels(text) VALUES(?)
				ON CONFLICT(text) DO UPDATE SET text=excluded.text RETURNING id`, l).Scan(&id); err != nil {
				return err
			}
			var err error
			if lids[i], err = checked("label", id); err != nil {
				return err
			}
		}
		return nil
	})
	return tids, lids, err
}

// reserve adds placeholder rows for target and label ids that segments
// hold and the catalog lacks, durably, so that no new target or label is
// ever given them.
func (c *catalog) reserve(targets, labels []uint32) error {
	return c.durably(func(tx *sql.Tx) error {
		for _, id := range targets {
			if _, err := tx.Exec(`INSERT OR IGNORE INTO targets(id, camera, region) VALUES(?, NULL, '')`, int64(id)); err != nil {
				return err
			}
		}
		for _, id := range labels {
			if _, err := tx.Exec(`INSERT OR IGNORE INTO labels(id, text) VALUES(?, NULL)`, int64(id)); err != nil {
				return err
			}
		}
		return nil
	})
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

// dropThumbsOutside deletes the thumbnail rows of a segment whose entry
// does not lie within its first size bytes (after the header): a torn
// tail cut at Open, or a file shorter than the catalog thought. It
// returns how many went.
func (c *catalog) dropThumbsOutside(seg uint64, size int64) (int64, error) {
	res, err := c.db.Exec(`DELETE FROM thumbs WHERE seg=? AND (off < ? OR len <= 0 OR len > ? OR off + (len + ?) / 8 * 8 > ?)`,
		int64(seg), headerSize, MaxThumbnailBytes, thumbEntrySize+7, size)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
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
	var seq, target int64
	err := c.db.QueryRowContext(ctx, `SELECT id, target, time_ns, seq, seg, off, len FROM thumbs WHERE id=?`, id).
		Scan(&r.id, &target, &r.time, &seq, &r.seg, &r.off, &r.length)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	r.seq, r.target = uint64(seq), uint32(target)
	return r, err == nil, err
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
