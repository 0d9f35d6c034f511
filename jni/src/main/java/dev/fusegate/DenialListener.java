package dev.fusegate;

import java.util.List;

/**
 * Hears accesses the policy denied, in batches, on a dispatcher thread of its own (never on a
 * thread serving a request). One call gets every denial queued since the previous one; the
 * list is unmodifiable. If the listener is slow the queue is bounded: the excess is dropped and
 * counted in {@link Stats#getDenialsDropped()}. Exceptions thrown here are logged and ignored.
 */
@FunctionalInterface
public interface DenialListener {
    void onDenials(List<Denial> denials);
}
