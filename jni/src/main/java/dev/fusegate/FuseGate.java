package dev.fusegate;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Arrays;
import java.util.Collections;

/**
 * One running fusegate daemon: Android-style scoped storage over a plain directory, served
 * through FUSE inside this process by native code ({@code libfusegate.so}).
 *
 * <p>The policy service pushes the app table ({@link #setApp}) and per-file grants
 * ({@link #grant}); every later access through the mount is decided by native code from what
 * was pushed (no call back into Java on the request path). Every method may be called from any
 * thread while requests are being served. Bad input throws {@link IllegalArgumentException};
 * any use after {@link #close()} throws {@link IllegalStateException}. The garbage collector
 * never closes an instance (a mount must not vanish with a lost reference): call
 * {@link #close()}, e.g. with try-with-resources or Kotlin's {@code use}.
 */
public final class FuseGate implements AutoCloseable {
    static {
        System.loadLibrary("fusegate");
    }

    /** Permission bits for {@link #setApp}. */
    public static final int READ_IMAGES = 1, READ_VIDEO = 2, READ_AUDIO = 4,
            ACCESS_MEDIA_LOCATION = 8, WRITE_MEDIA = 16, MANAGE_EXTERNAL_STORAGE = 32,
            LEGACY_STORAGE = 64;
    /** Every known permission bit. */
    public static final int ALL_PERMISSIONS = 127;

    /** Access for {@link #grant}; a write grant includes reading. */
    public static final int ACCESS_READ = 1, ACCESS_WRITE = 2;

    /**
     * Modes for {@link #openForApp}: the values of Android's {@code ParcelFileDescriptor.MODE_*}.
     * One of the three access modes, optionally with {@link #MODE_TRUNCATE} or
     * {@link #MODE_APPEND} (which need write access). {@code MODE_CREATE} (0x08000000) is
     * refused: openForApp opens existing files only.
     */
    public static final int MODE_READ_ONLY = 0x10000000, MODE_WRITE_ONLY = 0x20000000,
            MODE_READ_WRITE = 0x30000000, MODE_TRUNCATE = 0x04000000, MODE_APPEND = 0x02000000;

    /** Key of the native instance; never a pointer. */
    private final long handle;
    private final boolean mounted;
    private volatile boolean closed;

    private FuseGate(long handle, boolean mounted) {
        this.handle = handle;
        this.mounted = mounted;
    }

    /**
     * Mounts a new view of {@code lowerRoot} on {@code mountPoint} (both absolute directory
     * paths) and starts serving it. Needs root (or CAP_SYS_ADMIN) and /dev/fuse.
     *
     * @throws IOException the mount failed; the message carries the system's reason
     */
    public static FuseGate mount(String mountPoint, String lowerRoot, Options options)
            throws IOException {
        checkAbsolute(mountPoint, "mountPoint");
        checkAbsolute(lowerRoot, "lowerRoot");
        checkOptions(options);
        long h = nativeMount(mountPoint, lowerRoot, options.getThreads(), options.isPassthrough(),
                options.getCacheTimeoutMillis());
        return new FuseGate(h, true);
    }

    /**
     * Serves a FUSE session that is already mounted (e.g. by vold), on its /dev/fuse fd.
     * On success the fd belongs to this object (it is closed by {@link #close()}; do not use or
     * close it yourself); if this throws, the caller still owns it, untouched. Unmounting stays
     * the caller's job.
     *
     * @throws IllegalArgumentException the fd is not an open /dev/fuse descriptor
     * @throws IOException the daemon could not start (e.g. {@code lowerRoot} is not usable)
     */
    public static FuseGate attach(int fuseFd, String lowerRoot, Options options)
            throws IOException {
        if (fuseFd < 0) {
            throw new IllegalArgumentException(
                    "fuseFd " + fuseFd + " is not a file descriptor (negative)");
        }
        checkAbsolute(lowerRoot, "lowerRoot");
        checkOptions(options);
        long h = nativeAttach(fuseFd, lowerRoot, options.getThreads(), options.isPassthrough(),
                options.getCacheTimeoutMillis());
        return new FuseGate(h, false);
    }

    /**
     * Adds or replaces the app entry of {@code uid}: its package names (a shared uid has
     * several) and permission bits ({@link #READ_IMAGES} ...). Takes effect for the next
     * access.
     */
    public void setApp(int uid, String[] packages, int permissions) {
        checkUid(uid);
        String[] copy = checkPackages(packages, "packages");
        checkPermissions(permissions, "permissions");
        ensureOpen();
        nativeSetApp(handle, uid, copy, permissions);
    }

    /**
     * Adds or replaces many app entries at once, as one policy change: {@code packages[i]} and
     * {@code permissions[i]} belong to {@code uids[i]}; a later entry for the same uid wins. Every
     * entry is checked first: if one is bad this throws {@link IllegalArgumentException} naming it
     * and nothing changes. For pushing every app at boot: much cheaper than one {@link #setApp}
     * per app.
     */
    public void setApps(int[] uids, String[][] packages, int[] permissions) {
        checkBatch(uids, packages, "packages");
        checkBatch(uids, permissions, "permissions");
        int[] uidsCopy = uids.clone();
        String[][] copy = new String[packages.length][];
        int[] permissionsCopy = permissions.clone();
        for (int i = 0; i < uidsCopy.length; i++) {
            checkUid(uidsCopy[i], "uids[" + i + "]");
            copy[i] = checkPackages(packages[i], "packages[" + i + "]");
            checkPermissions(permissionsCopy[i], "permissions[" + i + "]");
        }
        ensureOpen();
        nativeSetApps(handle, uidsCopy, copy, permissionsCopy);
    }

    /** Removes the app entry of {@code uid}: it keeps access to its own files only. */
    public void removeApp(int uid) {
        checkUid(uid);
        ensureOpen();
        nativeRemoveApp(handle, uid);
    }

    /**
     * Gives {@code uid} access to one file, {@code path} relative to the storage root (e.g.
     * {@code Download/report.pdf}), replacing the grant it had there.
     *
     * @param access {@link #ACCESS_READ} or {@link #ACCESS_WRITE} (which includes reading)
     */
    public void grant(int uid, String path, int access) {
        checkUid(uid);
        checkRelative(path);
        checkAccess(access, "access");
        ensureOpen();
        nativeGrant(handle, uid, path, access);
    }

    /**
     * Many {@link #grant}s at once, as one policy change: {@code uids[i]} gets {@code access[i]}
     * to {@code paths[i]}; a later entry for the same uid and path wins. Every entry is checked
     * first: if one is bad this throws {@link IllegalArgumentException} naming it and nothing
     * changes.
     */
    public void grantAll(int[] uids, String[] paths, int[] access) {
        checkBatch(uids, paths, "paths");
        checkBatch(uids, access, "access");
        int[] uidsCopy = uids.clone();
        String[] pathsCopy = paths.clone();
        int[] accessCopy = access.clone();
        for (int i = 0; i < uidsCopy.length; i++) {
            checkUid(uidsCopy[i], "uids[" + i + "]");
            checkRelative(pathsCopy[i], "paths[" + i + "]");
            checkAccess(accessCopy[i], "access[" + i + "]");
        }
        ensureOpen();
        nativeGrantAll(handle, uidsCopy, pathsCopy, accessCopy);
    }

    /**
     * Many {@link #revoke}s at once, as one policy change: removes {@code uids[i]}'s grant on
     * {@code paths[i]}. Every entry is checked first: if one is bad this throws
     * {@link IllegalArgumentException} naming it and nothing changes.
     */
    public void revokeAll(int[] uids, String[] paths) {
        checkBatch(uids, paths, "paths");
        int[] uidsCopy = uids.clone();
        String[] pathsCopy = paths.clone();
        for (int i = 0; i < uidsCopy.length; i++) {
            checkUid(uidsCopy[i], "uids[" + i + "]");
            checkRelative(pathsCopy[i], "paths[" + i + "]");
        }
        ensureOpen();
        nativeRevokeAll(handle, uidsCopy, pathsCopy);
    }

    /** Removes {@code uid}'s grant on {@code path}, if any. Takes effect for the next access. */
    public void revoke(int uid, String path) {
        checkUid(uid);
        checkRelative(path);
        ensureOpen();
        nativeRevoke(handle, uid, path);
    }

    /** Drops what the kernel cached about {@code path} (relative to the storage root). */
    public void invalidate(String path) {
        checkRelative(path);
        ensureOpen();
        nativeInvalidate(handle, path);
    }

    /** Whether opens are answered with kernel passthrough (decided when the kernel connected). */
    public boolean passthroughActive() {
        ensureOpen();
        return nativePassthroughActive(handle);
    }

    /** False once the session ended: closed, or unmounted from outside. */
    public boolean isRunning() {
        return !closed && nativeIsRunning(handle);
    }

    /** A snapshot of the counters. */
    public Stats stats() {
        ensureOpen();
        return nativeStats(handle);
    }

    /**
     * Sets the listener that hears denied accesses, in batches, on a dispatcher thread of this
     * instance (started here, ended when the listener is removed or on close). Replaces the
     * previous listener; {@code null} removes it. Once this returns with {@code null} (or
     * {@link #close()} returns), the listener is not called again.
     */
    public void setDenialListener(DenialListener listener) {
        ensureOpen();
        nativeSetDenialListener(handle, listener);
    }

    /**
     * Sets the listener that hears files created, closed after writing, renamed and deleted
     * through the mount, in batches and in the order they completed, on a dispatcher thread of
     * this instance (started here, ended when the listener is removed or on close). Replaces
     * the previous listener; {@code null} removes it (and discards what is queued). Once this
     * returns with {@code null} (or {@link #close()} returns), the listener is not called again.
     * Events are queued only while a listener is set.
     */
    public void setEventListener(FileEventListener listener) {
        ensureOpen();
        nativeSetEventListener(handle, listener);
    }

    /**
     * File events dropped so far because the listener fell behind (its queue was full): when
     * this grows, the index should rescan. Also in {@link Stats#getEventsDropped()}.
     */
    public long droppedEvents() {
        ensureOpen();
        return nativeDroppedEvents(handle);
    }

    /**
     * Opens {@code path} (relative to the storage root) for the app {@code uid}, decided by the
     * same native policy code as that app's own {@code open} through the mount: each component
     * is looked up with the app's lookup rules, then the file is judged for reading (unless
     * write-only) and writing (when writing or truncating). Returns a new file descriptor
     * (close-on-exec) that belongs to the caller, e.g. for
     * {@code ParcelFileDescriptor.adoptFd(fd)}.
     *
     * <p>No symlink is followed (ELOOP), a directory is EISDIR, a missing file ENOENT: this
     * never creates. Changes made through the fd are not reported as file events.
     *
     * @param mode {@link #MODE_READ_ONLY}, {@link #MODE_WRITE_ONLY} or
     *     {@link #MODE_READ_WRITE}, optionally with {@link #MODE_TRUNCATE} or
     *     {@link #MODE_APPEND}; see {@link #parseMode}
     * @throws ErrnoException the app may not open it, or the open failed: carries the errno the
     *     app's own open would get (a denial is also reported to the denial listener)
     * @throws IllegalArgumentException bad path, uid or mode
     */
    public int openForApp(String path, int uid, int mode) throws ErrnoException {
        checkRelative(path);
        checkUid(uid);
        ensureOpen();
        return nativeOpenForApp(handle, path, uid, mode);
    }

    /**
     * The mode for {@link #openForApp} of a mode string as {@code ParcelFileDescriptor.parseMode}
     * reads it, without creation: {@code "r"}, {@code "w"} and {@code "wt"} (write, truncate),
     * {@code "wa"} (append), {@code "rw"}, {@code "rwt"}.
     */
    public static int parseMode(String mode) {
        if (mode == null) {
            throw new IllegalArgumentException("mode is null");
        }
        switch (mode) {
            case "r": return MODE_READ_ONLY;
            case "w":
            case "wt": return MODE_WRITE_ONLY | MODE_TRUNCATE;
            case "wa": return MODE_WRITE_ONLY | MODE_APPEND;
            case "rw": return MODE_READ_WRITE;
            case "rwt": return MODE_READ_WRITE | MODE_TRUNCATE;
            default:
                throw new IllegalArgumentException("bad mode \"" + mode
                        + "\": use r, w, wt, wa, rw or rwt");
        }
    }

    /**
     * Stops serving and, if {@link #mount} mounted it, unmounts (lazily when files are still
     * open: their reads and writes go on working, new opens fail). Waits for calls in progress
     * on other threads and for a listener call in progress; may be called from the listener.
     * Idempotent.
     */
    @Override
    public void close() {
        closed = true;
        // The native side serializes: a concurrent close() waits for the first one (except
        // inside the listener, where waiting could deadlock), a later one does nothing.
        nativeClose(handle);
    }

    /**
     * Replaces the native server of a session handed over with {@link #attach} by a new one on
     * the same session, without unmounting: the old server finishes the requests it holds, the
     * new one takes over every file, directory and cwd apps hold on the mount, the policy with
     * every app and grant pushed so far, and the listeners; the kernel resends what the old one
     * left unanswered. Apps see a short stall, no error. Use it to recover a server in a bad
     * state (its statistics start again from zero).
     *
     * @throws IllegalStateException if closed, or if this gate was made by {@link #mount}
     */
    public void restart() {
        nativeRestart(handle);
    }

    @Override
    public String toString() {
        return "FuseGate{" + handle + (mounted ? ", mounted" : ", attached")
                + (closed ? ", closed" : "") + "}";
    }

    // ---- checks (cheap ones here; the native side checks everything again) --------------

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("this FuseGate is closed");
        }
    }

    private static void checkUid(int uid) {
        if (uid < 0) {
            throw new IllegalArgumentException("invalid uid " + uid + ": negative");
        }
    }

    private static void checkUid(int uid, String what) {
        if (uid < 0) {
            throw new IllegalArgumentException(what + ": invalid uid " + uid + ": negative");
        }
    }

    /** A copy of a non-null array of non-empty package names. */
    private static String[] checkPackages(String[] packages, String what) {
        if (packages == null) {
            throw new IllegalArgumentException(what + " is null");
        }
        String[] copy = packages.clone();
        for (int i = 0; i < copy.length; i++) {
            if (copy[i] == null) {
                throw new IllegalArgumentException(what + "[" + i + "] is null");
            }
            if (copy[i].isEmpty()) {
                throw new IllegalArgumentException(what + "[" + i + "] is empty");
            }
        }
        return copy;
    }

    private static void checkPermissions(int permissions, String what) {
        if ((permissions & ~ALL_PERMISSIONS) != 0) {
            throw new IllegalArgumentException((what.equals("permissions") ? "" : what + ": ")
                    + "unknown permission bits 0x"
                    + Integer.toHexString(permissions & ~ALL_PERMISSIONS));
        }
    }

    private static void checkAccess(int access, String what) {
        if (access != ACCESS_READ && access != ACCESS_WRITE && access != (ACCESS_READ | ACCESS_WRITE)) {
            throw new IllegalArgumentException((what.equals("access") ? "" : what + ": ")
                    + "unknown access " + access + ": use ACCESS_READ (1) or ACCESS_WRITE (2)");
        }
    }

    /** The uids of a batch and one parallel array: both non-null, of equal length. */
    private static void checkBatch(int[] uids, Object parallel, String what) {
        if (uids == null) {
            throw new IllegalArgumentException("uids is null");
        }
        if (parallel == null) {
            throw new IllegalArgumentException(what + " is null");
        }
        int n = java.lang.reflect.Array.getLength(parallel);
        if (n != uids.length) {
            throw new IllegalArgumentException("uids has " + uids.length + " entries but " + what
                    + " has " + n + ": one per uid");
        }
    }

    private static void checkOptions(Options options) {
        if (options == null) {
            throw new IllegalArgumentException("options is null: use Options.defaults()");
        }
    }

    private static void checkString(String s, String what) {
        if (s == null) {
            throw new IllegalArgumentException(what + " is null");
        }
        if (s.isEmpty()) {
            throw new IllegalArgumentException(what + " is empty");
        }
        if (s.indexOf('\0') >= 0) {
            throw new IllegalArgumentException(what + " contains a NUL character");
        }
    }

    private static void checkAbsolute(String path, String what) {
        checkString(path, what);
        if (!path.startsWith("/")) {
            throw new IllegalArgumentException(what + " \"" + path + "\" must be an absolute path");
        }
    }

    /** Relative to the storage root: no leading '/', no empty, "." or ".." components. */
    private static void checkRelative(String path) {
        checkRelative(path, "path");
    }

    private static void checkRelative(String path, String what) {
        checkString(path, what);
        String prefix = what.equals("path") ? "" : what + ": ";
        if (path.startsWith("/")) {
            throw new IllegalArgumentException(prefix + "invalid path \"" + path
                    + "\": must be relative to the storage root, not absolute");
        }
        for (String component : path.split("/", -1)) {
            if (component.isEmpty() || component.equals(".") || component.equals("..")) {
                throw new IllegalArgumentException(prefix + "invalid path \"" + path
                        + "\": must be relative, without '..', '.' or empty components");
            }
        }
    }

    // ---- native side ------------------------------------------------------------------------

    /** Called by the dispatcher thread; returns what the listener threw, or null. */
    static String deliver(DenialListener listener, Denial[] batch) {
        try {
            listener.onDenials(Collections.unmodifiableList(Arrays.asList(batch)));
            return null;
        } catch (Throwable t) {
            StringWriter w = new StringWriter();
            t.printStackTrace(new PrintWriter(w));
            return w.toString();
        }
    }

    /** Called by the event dispatcher thread; returns what the listener threw, or null. */
    static String deliverEvents(FileEventListener listener, FileEvent[] batch) {
        try {
            listener.onEvents(Collections.unmodifiableList(Arrays.asList(batch)));
            return null;
        } catch (Throwable t) {
            StringWriter w = new StringWriter();
            t.printStackTrace(new PrintWriter(w));
            return w.toString();
        }
    }

    // Package-private so that tests can prove the native side checks input on its own.
    static native long nativeMount(String mountPoint, String lowerRoot, int threads,
            boolean passthrough, long cacheTimeoutMillis) throws IOException;
    static native long nativeAttach(int fuseFd, String lowerRoot, int threads,
            boolean passthrough, long cacheTimeoutMillis) throws IOException;
    static native void nativeClose(long handle);
    static native void nativeRestart(long handle);
    static native void nativeSetApp(long handle, int uid, String[] packages, int permissions);
    static native void nativeRemoveApp(long handle, int uid);
    static native void nativeGrant(long handle, int uid, String path, int access);
    static native void nativeRevoke(long handle, int uid, String path);
    static native void nativeSetApps(long handle, int[] uids, String[][] packages,
            int[] permissions);
    static native void nativeGrantAll(long handle, int[] uids, String[] paths, int[] access);
    static native void nativeRevokeAll(long handle, int[] uids, String[] paths);
    static native void nativeInvalidate(long handle, String path);
    static native boolean nativePassthroughActive(long handle);
    static native boolean nativeIsRunning(long handle);
    static native Stats nativeStats(long handle);
    static native void nativeSetDenialListener(long handle, DenialListener listener);
    static native void nativeSetEventListener(long handle, FileEventListener listener);
    static native long nativeDroppedEvents(long handle);
    static native int nativeOpenForApp(long handle, String path, int uid, int mode)
            throws ErrnoException;
    /**
     * Test hook: panics inside native code, which must surface as IllegalStateException. Bound
     * only by libraries built with the cargo feature {@code test-hooks} (jni/run-tests.sh);
     * elsewhere a call throws UnsatisfiedLinkError.
     */
    static native void nativePanicForTesting();

    /** The native handle, for tests in this package. */
    long handleForTesting() {
        return handle;
    }
}
