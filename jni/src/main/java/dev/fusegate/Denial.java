package dev.fusegate;

/** One denied access: who, what, which path (relative to the storage root), and the errno. */
public final class Denial {
    /** errno values the policy answers with. */
    public static final int EPERM = 1, ENOENT = 2, EACCES = 13;

    private final int uid;
    private final String operation;
    private final String path;
    private final int errno;

    /** Made by the native side (its constructor id is cached); public for tests and mocks. */
    public Denial(int uid, String operation, String path, int errno) {
        this.uid = uid;
        this.operation = operation;
        this.path = path;
        this.errno = errno;
    }

    /** The caller's uid. */
    public int getUid() {
        return uid;
    }

    /**
     * What was attempted: {@code lookup, read, write, create, mkdir, delete, rename-from,
     * rename-to, list}.
     */
    public String getOperation() {
        return operation;
    }

    /** Relative to the storage root, e.g. {@code DCIM/Camera/x.jpg}. */
    public String getPath() {
        return path;
    }

    /** The positive errno the caller got, e.g. {@link #EACCES}. */
    public int getErrno() {
        return errno;
    }

    /** {@code EACCES}, {@code ENOENT}, {@code EPERM}, or the number. */
    public String getErrnoName() {
        switch (errno) {
            case EPERM: return "EPERM";
            case ENOENT: return "ENOENT";
            case EACCES: return "EACCES";
            default: return "errno " + errno;
        }
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Denial)) return false;
        Denial d = (Denial) o;
        return uid == d.uid && errno == d.errno && operation.equals(d.operation) && path.equals(d.path);
    }

    @Override
    public int hashCode() {
        return ((uid * 31 + operation.hashCode()) * 31 + path.hashCode()) * 31 + errno;
    }

    @Override
    public String toString() {
        return "Denial{uid=" + uid + ", " + operation + " " + path + ": " + getErrnoName() + "}";
    }
}
