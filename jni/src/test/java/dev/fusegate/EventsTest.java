package dev.fusegate;

import static dev.fusegate.Harness.appendAs;
import static dev.fusegate.Harness.check;
import static dev.fusegate.Harness.checkEq;
import static dev.fusegate.Harness.expectThrows;
import static dev.fusegate.Harness.run;
import static dev.fusegate.Harness.runFor;
import static dev.fusegate.Harness.sleep;
import static dev.fusegate.Harness.waitFor;
import static dev.fusegate.Harness.writeAs;

import dev.fusegate.Harness.Fixture;
import dev.fusegate.Harness.Result;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * File events reach a {@link FileEventListener}: what apps do through the mount, exactly and in
 * order; and a flood with a slow listener drops events (counted exactly) instead of stalling
 * requests.
 */
final class EventsTest {
    private EventsTest() {}

    static final int APP = 10_011;
    static final String PKG = "com.example.events";

    static void register(TestMain t) {
        t.add("fileEventsArriveExactlyAndInOrder", EventsTest::fileEventsArriveExactlyAndInOrder);
        t.add("eventFloodWithSlowListenerDropsExactly", 900_000, EventsTest::eventFlood);
        t.add("listenersMayStopEachOtherAndClose", EventsTest::listenersMayStopEachOther);
    }

    static List<Thread> eventThreads() {
        List<Thread> found = new ArrayList<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("fusegate-events-") && t.isAlive()) {
                found.add(t);
            }
        }
        return found;
    }

    /** Records each event as text through the per-kind methods (the default onEvents). */
    static final class Recorder implements FileEventListener {
        final List<String> seen = Collections.synchronizedList(new ArrayList<>());
        final List<String> threads = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void onEvents(List<FileEvent> events) {
            Thread me = Thread.currentThread();
            threads.add(me.getName() + (me.isDaemon() ? "/daemon" : ""));
            expectThrows(UnsupportedOperationException.class, "", events::clear);
            FileEventListener.super.onEvents(events);
        }

        @Override
        public void created(String path, int uid) {
            seen.add("created " + path + " " + uid);
        }

        @Override
        public void closedAfterWrite(String path, int uid, long size) {
            seen.add("closedAfterWrite " + path + " " + uid + " " + size);
        }

        @Override
        public void renamed(String from, String to, int uid, boolean isDirectory) {
            seen.add("renamed " + from + " " + to + " " + uid + (isDirectory ? " dir" : " file"));
        }

        @Override
        public void deleted(String path, int uid) {
            seen.add("deleted " + path + " " + uid);
        }
    }

    /** Runs {@code cmd} as the app; it must succeed. Then waits until the kernel released
     * every file it opened (RELEASE is asynchronous: its event must come before the next). */
    static void as(Fixture f, String what, String... cmd) {
        Result r = run(APP, cmd);
        checkEq(0, r.exit, what + ": " + r);
        waitFor("files released after " + what, 10_000, () -> f.gate.stats().getOpenFiles() == 0);
    }

    static void fileEventsArriveExactlyAndInOrder() throws Exception {
        // One worker: requests are served in the order the kernel queued them.
        try (Fixture f = new Fixture("events").file("Download/.keep", "").file("DCIM/.keep", "")
                .mount(Options.builder().threads(1).build())) {
            f.gate.setApp(APP, new String[] {PKG}, 0);
            checkEq(0, eventThreads().size(), "no event dispatcher before a listener is set");
            // Before any listener nothing is queued: this creation is never heard.
            checkEq("OK", writeAs(APP, f.at("Download/before.txt"), "x"), "write before listening");
            waitFor("released", 10_000, () -> f.gate.stats().getOpenFiles() == 0);

            Recorder rec = new Recorder();
            f.gate.setEventListener(rec);
            checkEq(1, eventThreads().size(), "one event dispatcher");
            String dl = f.at("Download").toString();
            checkEq("OK", writeAs(APP, f.at("Download/a.txt"), "hello"), "create and write");
            waitFor("released", 10_000, () -> f.gate.stats().getOpenFiles() == 0);
            checkEq("OK", appendAs(APP, f.at("Download/a.txt"), "!!"), "append");
            waitFor("released", 10_000, () -> f.gate.stats().getOpenFiles() == 0);
            as(f, "rename a file", "mv", dl + "/a.txt", dl + "/b.txt");
            as(f, "mkdir", "mkdir", dl + "/d");
            checkEq("OK", writeAs(APP, f.at("Download/d/c.txt"), "c"), "create in the dir");
            waitFor("released", 10_000, () -> f.gate.stats().getOpenFiles() == 0);
            as(f, "rename a directory", "mv", dl + "/d", dl + "/e");
            checkEq("EPERM", writeAs(APP, f.at("DCIM/doc.pdf"), "x"), "a refused create");
            as(f, "delete", "rm", dl + "/e/c.txt");
            as(f, "rmdir", "rmdir", dl + "/e");
            as(f, "delete", "rm", dl + "/b.txt");

            List<String> want = Arrays.asList(
                    "created Download/a.txt " + APP,
                    "closedAfterWrite Download/a.txt " + APP + " 5",
                    "closedAfterWrite Download/a.txt " + APP + " 7",
                    "renamed Download/a.txt Download/b.txt " + APP + " file",
                    "created Download/d/c.txt " + APP,
                    "closedAfterWrite Download/d/c.txt " + APP + " 1",
                    "renamed Download/d Download/e " + APP + " dir",
                    "deleted Download/e/c.txt " + APP,
                    "deleted Download/b.txt " + APP);
            waitFor("every event heard (heard " + rec.seen + ")", 10_000,
                    () -> rec.seen.size() >= want.size());
            sleep(500); // anything extra would arrive meanwhile
            checkEq(want, new ArrayList<>(rec.seen), "events, in order");
            String t = rec.threads.get(0);
            check(t.startsWith("fusegate-events-") && t.endsWith("/daemon"),
                    "delivered on the event dispatcher, a daemon thread: " + t);
            checkEq(0L, f.gate.droppedEvents(), "nothing dropped");

            // Root's changes are events too; a listener that throws is logged and ignored.
            AtomicLong thrown = new AtomicLong();
            f.gate.setEventListener(new FileEventListener() {
                @Override
                public void created(String path, int uid) {
                    thrown.incrementAndGet();
                    throw new RuntimeException("listener failure (expected by the test)");
                }
            });
            checkEq(1, eventThreads().size(), "replacing keeps the one dispatcher");
            Files.write(f.at("Download/root.txt"), new byte[] {1});
            waitFor("the throwing listener to be called", 10_000, () -> thrown.get() > 0);

            // Removed: the dispatcher has ended when the call returns, and nothing is heard.
            f.gate.setEventListener(null);
            checkEq(0, eventThreads().size(), "dispatcher gone after removal");
            rec.seen.clear();
            f.gate.setEventListener(null); // removing twice is fine
            checkEq("OK", writeAs(APP, f.at("Download/after.txt"), "x"), "write after removal");
            sleep(500);
            check(rec.seen.isEmpty(), "nothing heard after removal: " + rec.seen);

            // close() ends the dispatcher too.
            f.gate.setEventListener(rec);
            f.gate.close();
            checkEq(0, eventThreads().size(), "dispatcher gone after close");
            FuseGate g = f.gate;
            expectThrows(IllegalStateException.class, "closed", () -> g.setEventListener(rec));
            expectThrows(IllegalStateException.class, "closed", g::droppedEvents);
            long h = g.handleForTesting();
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeDroppedEvents(h));
            expectThrows(IllegalStateException.class, "closed",
                    () -> FuseGate.nativeSetEventListener(h, null));
        }
    }

    /** The denial listener removes the event listener while the event listener closes: both
     * dispatchers end, nothing waits forever. */
    static void listenersMayStopEachOther() throws Exception {
        try (Fixture f = new Fixture("cross").file("DCIM/x.jpg", "x").file("Download/.keep", "").mount()) {
            FuseGate g = f.gate;
            g.setApp(APP, new String[] {PKG}, 0);
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch inEventListener = new CountDownLatch(1);
            CountDownLatch removing = new CountDownLatch(1);
            CountDownLatch closed = new CountDownLatch(1);
            // Each listener stops the other's dispatcher while the other is inside its call.
            g.setDenialListener(batch -> {
                try {
                    check(inEventListener.await(10, TimeUnit.SECONDS), "event listener entered");
                    removing.countDown();
                    // Past the Java side's closed flag, straight into the race.
                    FuseGate.nativeSetEventListener(g.handleForTesting(), null);
                } catch (IllegalStateException e) {
                    // closed meanwhile by the event listener: fine
                } catch (Throwable e) {
                    errors.add(e);
                }
            });
            g.setEventListener(new FileEventListener() {
                @Override
                public void onEvents(List<FileEvent> events) {
                    inEventListener.countDown();
                    try {
                        check(removing.await(10, TimeUnit.SECONDS), "denial listener removing");
                        sleep(300); // let it get inside the removal first
                        g.close();
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                    closed.countDown();
                }
            });
            // An event, then a denial.
            run(APP, "sh", "-c", "printf x > \"$2\"; cat \"$1\" 2>/dev/null", "sh",
                    f.at("DCIM/x.jpg").toString(), f.at("Download/y.txt").toString());
            check(closed.await(20, TimeUnit.SECONDS), "the event listener closed");
            waitFor("both dispatchers to end", 10_000, () -> eventThreads().isEmpty()
                    && FuseGateTest.dispatcherThreads().isEmpty());
            check(errors.isEmpty(), "no errors in the listeners: " + errors);
            check(!Harness.isMounted(f.mnt), "closed");
        }
    }

    static int floodCount() {
        String s = System.getenv("FUSEGATE_EVENT_FLOOD");
        return s == null ? 100_000 : Math.max(1, Integer.parseInt(s));
    }

    /** Creates {@code n} empty files in one process: `: > f` is one CREATE and one RELEASE. */
    static final String CREATE_LOOP = String.join("\n",
            "d=$1; n=$2; i=0",
            "while [ $i -lt $n ]; do",
            "  : > \"$d/f$i\" || exit 1",
            "  i=$((i+1))",
            "done");

    /**
     * 100,000 creates (FUSEGATE_EVENT_FLOOD) while the listener takes 1 ms per event: the
     * queue fills, events are dropped and counted, and every event is either heard or counted
     * as dropped. Meanwhile this JVM times lookups through the mount (each reaches the daemon)
     * and prints their latency: a full queue must never stall a request.
     */
    static void eventFlood() throws Exception {
        int n = floodCount();
        try (Fixture f = new Fixture("flood").file("Download/.keep", "").mount()) {
            f.gate.setApp(APP, new String[] {PKG}, 0);
            checkEq("OK", run(APP, "mkdir", f.at("Download/flood").toString()).outcome(), "mkdir");
            AtomicLong heard = new AtomicLong();
            AtomicLong wrong = new AtomicLong();
            AtomicBoolean slow = new AtomicBoolean(true);
            f.gate.setEventListener(new FileEventListener() {
                @Override
                public void onEvents(List<FileEvent> events) {
                    for (FileEvent e : events) {
                        boolean ours = e.getUid() == APP && e.getPath().startsWith("Download/flood/f")
                                && (e.getKind() == FileEvent.CREATED
                                        || e.getKind() == FileEvent.CLOSED_AFTER_WRITE);
                        if (!ours) {
                            wrong.incrementAndGet();
                        }
                        heard.incrementAndGet();
                        if (slow.get()) {
                            sleep(1);
                        }
                    }
                }
            });

            Flood flood = flood(f, "Download/flood", n);
            long floodMs = flood.ms;
            long generated = 2L * n; // created + closedAfterWrite per file
            slow.set(false);
            waitFor("every event heard or dropped", 120_000,
                    () -> heard.get() + f.gate.droppedEvents() >= generated);
            sleep(500);
            long dropped = f.gate.droppedEvents();
            checkEq(generated, heard.get() + dropped, "heard (" + heard.get() + ") + dropped ("
                    + dropped + ") = generated");
            checkEq(dropped, f.gate.stats().getEventsDropped(), "Stats agree");
            checkEq(0L, wrong.get(), "events that were not the flood's");
            // During the flood the listener took at most one event per ms; the queue holds 16,384.
            if (generated > 16_384 + floodMs + 1) {
                check(dropped > 0, "the slow listener made the queue drop (flood took " + floodMs + " ms)");
            }

            System.out.printf("    flood: %d creates in %d ms (%.0f/s); events heard %d, dropped %d%n",
                    n, floodMs, n * 1000.0 / Math.max(1, floodMs), heard.get(), dropped);
            System.out.println("    lookup latency, flood with the slow listener: " + flood.latency());

            // The same flood with no listener, side by side: what the listener costs requests.
            f.gate.setEventListener(null);
            checkEq("OK", run(APP, "mkdir", f.at("Download/flood2").toString()).outcome(), "mkdir");
            Flood bare = flood(f, "Download/flood2", n);
            System.out.println("    lookup latency, same flood, no listener:      " + bare.latency()
                    + " (" + bare.ms + " ms)");
            f.gate.setEventListener(null);
        }
    }

    static final class Flood {
        final long ms;
        final List<Long> sorted;

        Flood(long ms, List<Long> sorted) {
            this.ms = ms;
            this.sorted = sorted;
        }

        String latency() {
            return String.format("%d probes: median %.2f ms, p99 %.2f ms, max %.2f ms", sorted.size(),
                    pct(sorted, 50) / 1e6, pct(sorted, 99) / 1e6, sorted.get(sorted.size() - 1) / 1e6);
        }
    }

    /**
     * Creates {@code n} files in {@code dir} as the app while this JVM times lookups of names
     * that do not exist (never cached by the kernel: each one a request served by a worker).
     */
    static Flood flood(Fixture f, String dir, int n) throws Exception {
        List<Long> latencies = Collections.synchronizedList(new ArrayList<>());
        AtomicBoolean flooding = new AtomicBoolean(true);
        Thread prober = new Thread(() -> {
            long i = 0;
            while (flooding.get()) {
                long t0 = System.nanoTime();
                boolean exists = Files.exists(f.at("Download/probe-" + i++));
                latencies.add(System.nanoTime() - t0);
                check(!exists, "probe names do not exist");
                sleep(2);
            }
        }, "flood-prober");
        prober.start();
        long t0 = System.nanoTime();
        Result r;
        try {
            r = runFor(600_000, APP, "sh", "-c", CREATE_LOOP, "sh", f.at(dir).toString(),
                    Integer.toString(n));
        } finally {
            flooding.set(false);
            prober.join(10_000);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        checkEq(0, r.exit, "the flood: " + r);
        waitFor("files released", 30_000, () -> f.gate.stats().getOpenFiles() == 0);
        List<Long> sorted = new ArrayList<>(latencies);
        Collections.sort(sorted);
        check(!sorted.isEmpty(), "probes ran");
        return new Flood(ms, sorted);
    }

    static long pct(List<Long> sorted, int p) {
        return sorted.get(Math.min(sorted.size() - 1, sorted.size() * p / 100));
    }
}
