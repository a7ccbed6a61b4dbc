// Package journal is the per-session output log of a tether session: an
// on-disk, sequence-numbered, bounded journal of output records that attached
// clients read from and acknowledge.
//
// Records are appended to segment files named by the sequence number of their
// first record (00000000000000000001.seg, ...), written behind: a record
// acknowledged while it is still in the in-memory tail is never written
// (behind.go). Readers read older records back
// from the files, so memory stays small even for large journals; only a
// compact (seq -> segment, offset) index is kept in memory. Acknowledged
// records free space and fully acknowledged segments are deleted. When the
// unacknowledged bytes reach Options.MaxBytes, the Mode decides whether
// Append blocks until an Ack (Block) or discards the oldest unacknowledged
// segments and reports the loss with a KindDropped record (Drop).
//
// Dirty segments and the acknowledgement mark are fsync'd in batches by a
// background goroutine; Open recovers from a torn or corrupt tail.
package journal
