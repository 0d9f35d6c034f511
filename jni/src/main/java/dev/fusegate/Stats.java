package dev.fusegate;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** A snapshot of a {@link FuseGate}'s counters. Immutable. */
public final class Stats {
    // Indexes into the counters array the native side fills (src/jni/natives.rs, fn counters).
    private static final int REQUESTS = 0, ERRORS = 1, MALFORMED = 2, INTERRUPTS = 3,
            PASSTHROUGH_OPENS = 4, USERSPACE_OPENS = 5, REDACTED_OPENS = 6, BYTES_READ = 7,
            BYTES_WRITTEN = 8, DENIALS = 9, BACKING_REGISTERED = 10, BACKING_RELEASED = 11,
            NODES = 12, OPEN_FILES = 13, DENIALS_DROPPED = 14, EVENTS_DROPPED = 15,
            BYTES_ZEROED = 16, FINDER_RUNS = 17, FINDER_NANOS = 18, FINDER_CONSERVATIVE = 19,
            FINDER_ERRORS = 20, RANGE_CACHE_HITS = 21, RANGE_CACHE_MISSES = 22, COUNT = 23;

    private final long[] c;
    private final boolean passthroughActive;
    private final Map<String, Long> requestsByOpcode;

    /** Called from native code (constructor id cached in JNI_OnLoad). */
    Stats(long[] counters, boolean passthroughActive, String[] opcodes, long[] counts) {
        if (counters == null || counters.length != COUNT || opcodes == null || counts == null
                || opcodes.length != counts.length) {
            throw new IllegalStateException("internal error: malformed counters from libfusegate");
        }
        this.c = counters.clone();
        this.passthroughActive = passthroughActive;
        Map<String, Long> m = new LinkedHashMap<>();
        for (int i = 0; i < opcodes.length; i++) {
            m.put(opcodes[i], counts[i]);
        }
        this.requestsByOpcode = Collections.unmodifiableMap(m);
    }

    /** FUSE requests answered, all opcodes. */
    public long getRequests() { return c[REQUESTS]; }
    /** Requests answered with an error (including denials and plain ENOENT lookups). */
    public long getErrors() { return c[ERRORS]; }
    /** Requests the daemon could not decode. */
    public long getMalformed() { return c[MALFORMED]; }
    public long getInterrupts() { return c[INTERRUPTS]; }
    /** Opens handed to the kernel: their reads and writes never reach the daemon. */
    public long getPassthroughOpens() { return c[PASSTHROUGH_OPENS]; }
    /** Opens whose data the daemon serves (passthrough off or unavailable, or redacted). */
    public long getUserspaceOpens() { return c[USERSPACE_OPENS]; }
    /** Userspace opens of photos and videos whose location metadata reads back as zeros. */
    public long getRedactedOpens() { return c[REDACTED_OPENS]; }
    /** Bytes of location metadata served as zeros to redacted opens. */
    public long getBytesZeroed() { return c[BYTES_ZEROED]; }
    /** Location range-finder runs: file versions read to find their location metadata. */
    public long getFinderRuns() { return c[FINDER_RUNS]; }
    /** Total time of the finder runs, in nanoseconds. */
    public long getFinderNanos() { return c[FINDER_NANOS]; }
    /** Finder runs on malformed files, which redact whole metadata containers. */
    public long getFinderConservative() { return c[FINDER_CONSERVATIVE]; }
    /** Finder runs that could not read the file (their opens, if redacted, got EIO). */
    public long getFinderErrors() { return c[FINDER_ERRORS]; }
    /** Opens whose file version's location ranges were cached. */
    public long getRangeCacheHits() { return c[RANGE_CACHE_HITS]; }
    /** Opens that had to look their file version's location ranges up. */
    public long getRangeCacheMisses() { return c[RANGE_CACHE_MISSES]; }
    /** Bytes read through userspace opens (passthrough I/O is not seen here). */
    public long getBytesRead() { return c[BYTES_READ]; }
    /** Bytes written through userspace opens. */
    public long getBytesWritten() { return c[BYTES_WRITTEN]; }
    /** Accesses the policy denied. */
    public long getDenials() { return c[DENIALS]; }
    public long getBackingRegistered() { return c[BACKING_REGISTERED]; }
    public long getBackingReleased() { return c[BACKING_RELEASED]; }
    /** Inodes the kernel currently knows. */
    public long getNodes() { return c[NODES]; }
    /** Files currently open through the mount. */
    public long getOpenFiles() { return c[OPEN_FILES]; }
    /** Denial events a slow {@link DenialListener} never got (queue full). */
    public long getDenialsDropped() { return c[DENIALS_DROPPED]; }
    /** File events a slow {@link FileEventListener} never got (queue full): time to rescan. */
    public long getEventsDropped() { return c[EVENTS_DROPPED]; }
    /** Whether opens are answered with kernel passthrough. */
    public boolean isPassthroughActive() { return passthroughActive; }

    /** Requests by opcode name ({@code lookup, open, read, ...}); unmodifiable, no zeros. */
    public Map<String, Long> getRequestsByOpcode() { return requestsByOpcode; }

    @Override
    public String toString() {
        return "Stats{requests=" + getRequests() + ", errors=" + getErrors()
                + ", passthroughOpens=" + getPassthroughOpens()
                + ", userspaceOpens=" + getUserspaceOpens()
                + ", redactedOpens=" + getRedactedOpens() + ", bytesZeroed=" + getBytesZeroed()
                + ", finderRuns=" + getFinderRuns() + ", finderNanos=" + getFinderNanos()
                + ", rangeCacheHits=" + getRangeCacheHits()
                + ", rangeCacheMisses=" + getRangeCacheMisses()
                + ", bytesRead=" + getBytesRead() + ", bytesWritten=" + getBytesWritten()
                + ", denials=" + getDenials() + ", eventsDropped=" + getEventsDropped()
                + ", nodes=" + getNodes()
                + ", openFiles=" + getOpenFiles() + ", passthroughActive=" + passthroughActive
                + ", byOpcode=" + requestsByOpcode + "}";
    }
}
