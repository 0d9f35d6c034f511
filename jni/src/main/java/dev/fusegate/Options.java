package dev.fusegate;

import java.util.concurrent.TimeUnit;

/**
 * How a {@link FuseGate} serves: worker threads, kernel passthrough, and how long the kernel
 * may cache names and attributes that do not depend on the caller. Immutable; made with
 * {@link #builder()} or {@link #defaults()}.
 */
public final class Options {
    public static final int MAX_THREADS = 64;
    /** One day. (Integer arithmetic: build.rs compares it with the Rust side.) */
    public static final long MAX_CACHE_TIMEOUT_MILLIS = 24L * 60 * 60 * 1000;

    private final int threads;
    private final boolean passthrough;
    private final long cacheTimeoutMillis;

    private Options(Builder b) {
        this.threads = b.threads;
        this.passthrough = b.passthrough;
        this.cacheTimeoutMillis = b.cacheTimeoutMillis;
    }

    /** The daemon's default worker count (half the CPUs, 1 to 4), passthrough on, 5 s cache timeout. */
    public static Options defaults() {
        return builder().build();
    }

    public static Builder builder() {
        return new Builder();
    }

    public int getThreads() {
        return threads;
    }

    public boolean isPassthrough() {
        return passthrough;
    }

    public long getCacheTimeoutMillis() {
        return cacheTimeoutMillis;
    }

    @Override
    public String toString() {
        return "Options{threads=" + threads + ", passthrough=" + passthrough
                + ", cacheTimeoutMillis=" + cacheTimeoutMillis + "}";
    }

    public static final class Builder {
        /** 0: let the daemon choose (half the CPUs, 1 to 4). */
        private int threads = 0;
        private boolean passthrough = true;
        private long cacheTimeoutMillis = 5000;

        private Builder() {}

        /** Worker threads, 1 to {@link #MAX_THREADS}, each on its own cloned /dev/fuse fd. */
        public Builder threads(int threads) {
            if (threads < 1 || threads > MAX_THREADS) {
                throw new IllegalArgumentException(
                        "threads must be 1.." + MAX_THREADS + ", not " + threads);
            }
            this.threads = threads;
            return this;
        }

        /**
         * Use kernel passthrough when the kernel offers it (Linux 6.9+): file data then never
         * passes through the daemon. Off: reads and writes are served in userspace.
         */
        public Builder passthrough(boolean passthrough) {
            this.passthrough = passthrough;
            return this;
        }

        /** 0 to {@link #MAX_CACHE_TIMEOUT_MILLIS}. */
        public Builder cacheTimeoutMillis(long millis) {
            if (millis < 0 || millis > MAX_CACHE_TIMEOUT_MILLIS) {
                throw new IllegalArgumentException("cache timeout must be 0.."
                        + MAX_CACHE_TIMEOUT_MILLIS + " ms, not " + millis);
            }
            this.cacheTimeoutMillis = millis;
            return this;
        }

        public Builder cacheTimeout(long amount, TimeUnit unit) {
            if (unit == null) {
                throw new IllegalArgumentException("unit is null");
            }
            if (amount < 0) {
                throw new IllegalArgumentException("cache timeout must not be negative: " + amount);
            }
            return cacheTimeoutMillis(unit.toMillis(amount));
        }

        public Options build() {
            return new Options(this);
        }
    }
}
