/* A VFS over SQLite's default one that writes WAL frames, and the pages a checkpoint copies
 * back, in large pieces.
 *
 * SQLite writes every WAL frame as two pwrite() calls (its 24-byte header, then the page), and
 * a checkpoint writes every page it copies back with one, in page order: a commit of N pages
 * costs 2N system calls and its checkpoint N more; on a virtual machine each costs several
 * microseconds, which made the writes of a big commit take ~6 times as long as the same bytes
 * written in large pieces. (Pieces under 128 KiB: SQLite's unix VFS writes at most 128 KiB - 1
 * bytes a call and reports a longer write as a full disk.)
 *
 * A WAL file gathers consecutive writes in a buffer and writes them when a commit frame is
 * complete (so a commit is on the file before SQLite publishes it in the wal-index, where other
 * connections find it), before a sync, a read, a size query, a truncation or a write
 * elsewhere, and on close. A database file does the same with a checkpoint's pages, and also
 * writes them before any lock, wal-index or memory-map call on its handle: other connections
 * read a copied-back page from the file only after the checkpoint has synced it and released
 * its locks. Nothing else changes: the database and the WAL keep SQLite's format and any other
 * SQLite program can open them.
 *
 * Ownership: the VFS is registered once per process and never unregistered; each file's
 * buffer belongs to its file handle (one connection, one thread at a time). */
#ifndef MT_STORE_WAL_VFS_H
#define MT_STORE_WAL_VFS_H

/* The VFS's name for sqlite3_open_v2(), registering it on first use; NULL when it could not
 * be registered (the caller then opens with the default VFS). */
const char *wal_vfs_name(void);

#endif
