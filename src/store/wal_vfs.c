/* A VFS that gathers the writes of WAL files and of checkpoints (see wal_vfs.h for why). */
#include "store/wal_vfs.h"
#include "lib/limits.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The WAL file format (https://sqlite.org/fileformat2.html#walformat): each frame starts with a
 * 24-byte header whose bytes 4-7 hold, big-endian, the database size after the commit for a
 * commit frame and zero for any other. SQLite writes a header and its page as two writes. */
#define WAL_FRAME_HEADER 24

struct wal_file {
	sqlite3_file base;
	sqlite3_file *real; /* the default VFS's file, in the memory right after this struct */
	unsigned char *buf; /* MT_SQLITE_WAL_BUFFER bytes, allocated at the first write */
	size_t len;         /* bytes gathered, to be written at offset `at` */
	sqlite3_int64 at;
	bool is_wal;         /* else the main database file */
	bool commit_pending; /* the last write was a commit frame's header: flush after its page */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs wal_vfs;
static const sqlite3_io_methods wal_io;

#define REAL_FILE_OFFSET ((sizeof(struct wal_file) + 7) & ~(size_t)7)

static struct wal_file *wf(sqlite3_file *f)
{
	return (struct wal_file *)f;
}

static int flush(struct wal_file *p)
{
	if (p->len == 0)
		return SQLITE_OK;
	int rc = p->real->pMethods->xWrite(p->real, p->buf, (int)p->len, p->at);
	p->len = 0;
	return rc;
}

static int wal_close(sqlite3_file *f)
{
	struct wal_file *p = wf(f);
	int rc = flush(p);
	int closed = p->real->pMethods->xClose(p->real);
	free(p->buf);
	p->buf = NULL;
	return rc != SQLITE_OK ? rc : closed;
}

static int wal_read(sqlite3_file *f, void *out, int amount, sqlite3_int64 offset)
{
	struct wal_file *p = wf(f);
	int rc = flush(p);
	return rc != SQLITE_OK ? rc : p->real->pMethods->xRead(p->real, out, amount, offset);
}

static bool is_commit_header(const void *data, int amount)
{
	const unsigned char *h = data;
	return amount == WAL_FRAME_HEADER && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int wal_write(sqlite3_file *f, const void *data, int amount, sqlite3_int64 offset)
{
	struct wal_file *p = wf(f);
	size_t n = (size_t)amount;
	bool appends = p->len > 0 && offset == p->at + (sqlite3_int64)p->len;
	if (!appends || p->len + n > MT_SQLITE_WAL_BUFFER) {
		int rc = flush(p);
		if (rc != SQLITE_OK)
			return rc;
		p->at = offset;
	}
	if (p->buf == NULL)
		p->buf = malloc(MT_SQLITE_WAL_BUFFER);
	if (p->buf == NULL || n > MT_SQLITE_WAL_BUFFER) { /* not gathered: written as it comes */
		p->commit_pending = false;
		return p->real->pMethods->xWrite(p->real, data, amount, offset);
	}
	memcpy(p->buf + p->len, data, n);
	p->len += n;
	bool commit_complete = p->commit_pending;
	p->commit_pending = p->is_wal && is_commit_header(data, amount);
	return commit_complete ? flush(p) : SQLITE_OK;
}

/* Flushes what the file gathered, then calls the real file's `method`: for every method
 * through which SQLite could read, size, sync or publish the file's bytes. Returns from the
 * calling method. */
#define FLUSH_THEN(f, method, ...)                                                                 \
	do {                                                                                       \
		struct wal_file *p_ = wf(f);                                                       \
		int rc_ = flush(p_);                                                               \
		return rc_ != SQLITE_OK ? rc_ : p_->real->pMethods->method(p_->real, __VA_ARGS__); \
	} while (0)

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	FLUSH_THEN(f, xTruncate, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
	FLUSH_THEN(f, xSync, flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size_r)
{
	FLUSH_THEN(f, xFileSize, size_r);
}

/* A database file's gathered pages go out before any lock changes hands: in rollback mode the
 * lock publishes them; in WAL mode a checkpoint's pages matter to other connections once the
 * checkpoint has synced the file and released its wal-index locks (both flush here too). */
static int wal_lock(sqlite3_file *f, int level)
{
	FLUSH_THEN(f, xLock, level);
}

static int wal_unlock(sqlite3_file *f, int level)
{
	FLUSH_THEN(f, xUnlock, level);
}

static int wal_check_reserved(sqlite3_file *f, int *out)
{
	FLUSH_THEN(f, xCheckReservedLock, out);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
	FLUSH_THEN(f, xFileControl, op, arg);
}

static int wal_sector_size(sqlite3_file *f)
{
	return wf(f)->real->pMethods->xSectorSize(wf(f)->real);
}

static int wal_device_characteristics(sqlite3_file *f)
{
	return wf(f)->real->pMethods->xDeviceCharacteristics(wf(f)->real);
}

/* The wal-index and the memory map belong to the database file's handle (SQLite calls them on
 * the WAL's never): delegated after a flush, so that nothing gathered is missed by a mapped
 * read nor published by a wal-index lock or barrier before it is on the file. A default VFS
 * whose files lack them gets an error (no map: SQLite then reads through xRead). */
static bool has_v3(sqlite3_file *f)
{
	return wf(f)->real->pMethods->iVersion >= 3;
}

static int wal_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
	struct wal_file *p = wf(f);
	int rc = flush(p);
	if (rc != SQLITE_OK)
		return rc;
	if (!has_v3(f))
		return SQLITE_IOERR_SHMMAP;
	return p->real->pMethods->xShmMap(p->real, page, size, extend, out);
}

static int wal_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	struct wal_file *p = wf(f);
	int rc = flush(p);
	if (rc != SQLITE_OK)
		return rc;
	if (!has_v3(f))
		return SQLITE_IOERR_SHMLOCK;
	return p->real->pMethods->xShmLock(p->real, offset, n, flags);
}

static void wal_shm_barrier(sqlite3_file *f)
{
	/* No way to report a failed flush here: the next call that can reports it (a
	 * checkpoint's sync always comes first). */
	(void)flush(wf(f));
	if (has_v3(f))
		wf(f)->real->pMethods->xShmBarrier(wf(f)->real);
}

static int wal_shm_unmap(sqlite3_file *f, int delete_flag)
{
	struct wal_file *p = wf(f);
	int rc = flush(p);
	if (rc != SQLITE_OK)
		return rc;
	return has_v3(f) ? p->real->pMethods->xShmUnmap(p->real, delete_flag) : SQLITE_OK;
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 offset, int amount, void **out)
{
	struct wal_file *p = wf(f);
	*out = NULL;
	int rc = flush(p);
	if (rc != SQLITE_OK || !has_v3(f))
		return rc;
	return p->real->pMethods->xFetch(p->real, offset, amount, out);
}

static int wal_unfetch(sqlite3_file *f, sqlite3_int64 offset, void *page)
{
	struct wal_file *p = wf(f);
	return has_v3(f) ? p->real->pMethods->xUnfetch(p->real, offset, page) : SQLITE_OK;
}

static const sqlite3_io_methods wal_io = {
    .iVersion = 3,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_file_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_check_reserved,
    .xFileControl = wal_file_control,
    .xSectorSize = wal_sector_size,
    .xDeviceCharacteristics = wal_device_characteristics,
    .xShmMap = wal_shm_map,
    .xShmLock = wal_shm_lock,
    .xShmBarrier = wal_shm_barrier,
    .xShmUnmap = wal_shm_unmap,
    .xFetch = wal_fetch,
    .xUnfetch = wal_unfetch,
};

/* Files other than WALs and main databases (journals, temporary files) are the default VFS's
 * own, opened in place: our file size is larger than its, and it sets its own methods. */
static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *flags_r)
{
	(void)vfs;
	if ((flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_DB)) == 0)
		return real_vfs->xOpen(real_vfs, name, f, flags, flags_r);
	struct wal_file *p = wf(f);
	memset(p, 0, sizeof(*p));
	p->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
	p->real = (sqlite3_file *)((char *)f + REAL_FILE_OFFSET);
	int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, flags_r);
	/* Methods only on success: SQLite closes a file whose pMethods is set. */
	if (rc == SQLITE_OK && p->real->pMethods != NULL)
		p->base.pMethods = &wal_io;
	return rc;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out)
{
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, size, out);
}

static void *vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs->xDlOpen(real_vfs, name);
}

static void vfs_dl_error(sqlite3_vfs *vfs, int size, char *out)
{
	(void)vfs;
	real_vfs->xDlError(real_vfs, size, out);
}

static void (*vfs_dl_sym(sqlite3_vfs *vfs, void *lib, const char *name))(void)
{
	(void)vfs;
	return real_vfs->xDlSym(real_vfs, lib, name);
}

static void vfs_dl_close(sqlite3_vfs *vfs, void *lib)
{
	(void)vfs;
	real_vfs->xDlClose(real_vfs, lib);
}

static int vfs_randomness(sqlite3_vfs *vfs, int size, char *out)
{
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, size, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int vfs_last_error(sqlite3_vfs *vfs, int size, char *out)
{
	(void)vfs;
	return real_vfs->xGetLastError(real_vfs, size, out);
}

static int vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static const char *registered_name;

static void register_vfs(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	/* Version 2 methods are all we delegate; the system-call hooks are for tests of SQLite. */
	if (real_vfs == NULL || real_vfs->iVersion < 2)
		return;
	wal_vfs = (sqlite3_vfs){
	    .iVersion = 2,
	    .szOsFile = (int)REAL_FILE_OFFSET + real_vfs->szOsFile,
	    .mxPathname = real_vfs->mxPathname,
	    .zName = "mailtrail-wal",
	    .xOpen = vfs_open,
	    .xDelete = vfs_delete,
	    .xAccess = vfs_access,
	    .xFullPathname = vfs_full_pathname,
	    .xDlOpen = vfs_dl_open,
	    .xDlError = vfs_dl_error,
	    .xDlSym = vfs_dl_sym,
	    .xDlClose = vfs_dl_close,
	    .xRandomness = vfs_randomness,
	    .xSleep = vfs_sleep,
	    .xCurrentTime = vfs_current_time,
	    .xGetLastError = vfs_last_error,
	    .xCurrentTimeInt64 = vfs_current_time_int64,
	};
	if (sqlite3_vfs_register(&wal_vfs, 0) == SQLITE_OK)
		registered_name = wal_vfs.zName;
}

const char *wal_vfs_name(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, register_vfs);
	return registered_name;
}
