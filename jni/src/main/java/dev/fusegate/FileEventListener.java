package dev.fusegate;

import java.util.List;

/**
 * Hears changes made through the mount, in batches, on a dispatcher thread of its own (never on
 * a thread serving a request), in the order they completed. Override the methods you need, or
 * {@link #onEvents} to take each batch whole (e.g. to feed a Kotlin {@code Flow}).
 *
 * <p>The queue is bounded: when the listener falls behind, new events are dropped and counted
 * ({@link FuseGate#droppedEvents()}, {@link Stats#getEventsDropped()}); the service should then
 * rescan. Exceptions thrown here are logged and ignored. Changes through fds handed out by
 * {@link FuseGate#openForApp} are not seen (the service knows what it opened).
 */
public interface FileEventListener {
    /** One batch, in order; unmodifiable. By default calls the method of each event's kind. */
    default void onEvents(List<FileEvent> events) {
        for (FileEvent e : events) {
            e.dispatchTo(this);
        }
    }

    /** A regular file was made (create, mknod, a new hard link). */
    default void created(String path, int uid) {}

    /** The last close of an open that could write: the moment a scanner wants. */
    default void closedAfterWrite(String path, int uid, long size) {}

    /** A file or directory moved (an exchange is two of these). */
    default void renamed(String from, String to, int uid, boolean isDirectory) {}

    /** A file (not a directory) was deleted. */
    default void deleted(String path, int uid) {}
}
