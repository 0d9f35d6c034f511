package dev.fusegate;

/**
 * One change an app (or anyone) made through the mount, as a media index needs it: a file was
 * created, closed after writing, renamed (file or directory) or deleted. Paths are relative to
 * the storage root. Immutable.
 */
public final class FileEvent {
    /** What happened ({@link #getKind()}). */
    public static final int CREATED = 1, CLOSED_AFTER_WRITE = 2, RENAMED = 3, DELETED = 4;

    private final int kind;
    private final String path;
    private final String target;
    private final int uid;
    private final long size;
    private final boolean isDirectory;

    /** Made by the native side (its constructor id is cached); public for tests and mocks. */
    public FileEvent(int kind, String path, String target, int uid, long size, boolean isDirectory) {
        this.kind = kind;
        this.path = path;
        this.target = target;
        this.uid = uid;
        this.size = size;
        this.isDirectory = isDirectory;
    }

    /** {@link #CREATED}, {@link #CLOSED_AFTER_WRITE}, {@link #RENAMED} or {@link #DELETED}. */
    public int getKind() {
        return kind;
    }

    /** The file's path; for {@link #RENAMED} where it was. */
    public String getPath() {
        return path;
    }

    /** For {@link #RENAMED}: where it is now; otherwise null. */
    public String getTarget() {
        return target;
    }

    /** Who made the change. */
    public int getUid() {
        return uid;
    }

    /** For {@link #CLOSED_AFTER_WRITE}: the size at the close; otherwise 0. */
    public long getSize() {
        return size;
    }

    /** For {@link #RENAMED}: whether a directory moved (everything below it moved too). */
    public boolean isDirectory() {
        return isDirectory;
    }

    /** Calls the method of {@code listener} for this event's kind. */
    public void dispatchTo(FileEventListener listener) {
        switch (kind) {
            case CREATED: listener.created(path, uid); break;
            case CLOSED_AFTER_WRITE: listener.closedAfterWrite(path, uid, size); break;
            case RENAMED: listener.renamed(path, target, uid, isDirectory); break;
            case DELETED: listener.deleted(path, uid); break;
            default: break;
        }
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof FileEvent)) return false;
        FileEvent e = (FileEvent) o;
        return kind == e.kind && uid == e.uid && size == e.size && isDirectory == e.isDirectory
                && path.equals(e.path) && (target == null ? e.target == null : target.equals(e.target));
    }

    @Override
    public int hashCode() {
        int h = kind * 31 + path.hashCode();
        h = h * 31 + (target == null ? 0 : target.hashCode());
        h = h * 31 + uid;
        h = h * 31 + Long.hashCode(size);
        return h * 31 + (isDirectory ? 1 : 0);
    }

    @Override
    public String toString() {
        switch (kind) {
            case CREATED: return "created(" + path + ", " + uid + ")";
            case CLOSED_AFTER_WRITE: return "closedAfterWrite(" + path + ", " + uid + ", " + size + ")";
            case RENAMED: return "renamed(" + path + ", " + target + ", " + uid + ", " + isDirectory + ")";
            case DELETED: return "deleted(" + path + ", " + uid + ")";
            default: return "FileEvent{kind=" + kind + ", " + path + "}";
        }
    }
}
