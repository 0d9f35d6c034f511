package dev.fusegate;

import java.io.IOException;

/**
 * A system call failed with {@link #getErrno()}: for {@link FuseGate#openForApp}, exactly the
 * errno the app's own {@code open} through the mount would get (EACCES, ENOENT, EPERM, EISDIR,
 * ELOOP...). On Android, {@code new android.system.ErrnoException("open", e.getErrno())}
 * converts it.
 */
public final class ErrnoException extends IOException {
    private static final long serialVersionUID = 1L;

    private final int errno;

    /** Made by the native side (its constructor id is cached). */
    public ErrnoException(String message, int errno) {
        super(message + " (" + name(errno) + ")");
        this.errno = errno;
    }

    /** The positive errno, e.g. 13 for EACCES. */
    public int getErrno() {
        return errno;
    }

    /** {@code EACCES}, {@code ENOENT}, ... or {@code errno N}. */
    public String getErrnoName() {
        return name(errno);
    }

    private static String name(int errno) {
        switch (errno) {
            case 1: return "EPERM";
            case 2: return "ENOENT";
            case 5: return "EIO";
            case 13: return "EACCES";
            case 16: return "EBUSY";
            case 18: return "EXDEV";
            case 20: return "ENOTDIR";
            case 21: return "EISDIR";
            case 22: return "EINVAL";
            case 23: return "ENFILE";
            case 24: return "EMFILE";
            case 26: return "ETXTBSY";
            case 30: return "EROFS";
            case 40: return "ELOOP";
            case 116: return "ESTALE";
            default: return "errno " + errno;
        }
    }
}
