// Package history is clipd's camera memory: it keeps the CLIP image
// embedding of classified frames (at most one per target per interval,
// and every frame that changed a state), with a small JPEG now and then,
// and searches them later by a text or image embedding (cosine) or by a
// label (CLIP's zero-shot probability), grouping hits into episodes.
//
// Embeddings are stored as binary16 in append-only, checksummed segment
// files that a search maps and scans on every core; a SQLite catalog
// indexes targets, labels, segments and thumbnails. A Store has one
// writer goroutine: Add never blocks the classification path (a
// byte-bounded queue, drops counted), a full disk pauses history without
// an error, and a killed process loses at most a torn tail, cut off at
// the next Open. docs/history.md describes the format, the disk it takes
// and the figures.
package history
