package dev.fusegate;

import java.io.FileWriter;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A tiny test runner (no JUnit on these machines): runs every registered test in turn, each
 * on its own thread with a time limit (a hang is a failure, reported with the stacks), and
 * closes with {@code java: N passed, M failed}. Arguments: substrings of test names to run
 * (none: all). {@code -Dfusegate.results=FILE} also writes "passed failed skipped" there.
 */
public final class TestMain {
    interface Test {
        void run() throws Exception;
    }

    private static final class Case {
        final String name;
        final Test test;
        final long timeoutMs;

        Case(String name, Test test, long timeoutMs) {
            this.name = name;
            this.test = test;
            this.timeoutMs = timeoutMs;
        }
    }

    private final List<Case> cases = new ArrayList<>();

    void add(String name, Test test) {
        cases.add(new Case(name, test, 60_000));
    }

    void add(String name, long timeoutMs, Test test) {
        cases.add(new Case(name, test, timeoutMs));
    }

    public static void main(String[] args) throws Exception {
        TestMain t = new TestMain();
        FuseGateTest.register(t);
        StressTest.register(t);
        BatchTest.register(t);
        EventsTest.register(t);
        OpenForAppTest.register(t);

        int passed = 0, failed = 0, skipped = 0;
        List<String> failures = new ArrayList<>();
        for (Case c : t.cases) {
            if (!selected(c.name, args)) {
                continue;
            }
            long start = System.nanoTime();
            AtomicReference<Throwable> error = new AtomicReference<>();
            Thread th = new Thread(() -> {
                try {
                    c.test.run();
                } catch (Throwable e) {
                    error.set(e);
                }
            }, "test-" + c.name);
            th.setDaemon(true);
            th.start();
            th.join(c.timeoutMs);
            long ms = (System.nanoTime() - start) / 1_000_000;
            if (th.isAlive()) {
                failed++;
                failures.add(c.name);
                System.out.println("FAIL " + c.name + ": timed out after " + c.timeoutMs
                        + " ms (deadlock?); stacks:");
                Thread.getAllStackTraces().forEach((thread, stack) -> {
                    System.out.println("  thread " + thread.getName());
                    for (StackTraceElement e : stack) {
                        System.out.println("      at " + e);
                    }
                });
                continue;
            }
            Throwable e = error.get();
            if (e == null) {
                passed++;
                System.out.println("ok   " + c.name + " (" + ms + " ms)");
            } else if (e instanceof Harness.SkipException) {
                skipped++;
                System.out.println("SKIP " + c.name + ": " + e.getMessage());
            } else {
                failed++;
                failures.add(c.name);
                System.out.println("FAIL " + c.name + " (" + ms + " ms): " + e);
                for (StackTraceElement el : e.getStackTrace()) {
                    if (el.getClassName().startsWith("dev.fusegate")) {
                        System.out.println("      at " + el);
                    }
                }
                if (e.getCause() != null) {
                    System.out.println("    caused by " + e.getCause());
                }
            }
        }
        if (skipped > 0) {
            System.out.println(skipped + " skipped");
        }
        if (!failures.isEmpty()) {
            System.out.println("failed: " + String.join(", ", failures));
        }
        System.out.println("java: " + passed + " passed, " + failed + " failed");
        String results = System.getProperty("fusegate.results");
        if (results != null) {
            try (FileWriter w = new FileWriter(results)) {
                w.write(passed + " " + failed + " " + skipped + "\n");
            } catch (IOException io) {
                System.out.println("writing " + results + ": " + io);
            }
        }
        System.out.flush();
        // halt, not exit: a hung test thread must not keep the VM (or a shutdown hook) waiting.
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    private static boolean selected(String name, String[] filters) {
        if (filters.length == 0) {
            return true;
        }
        for (String f : filters) {
            if (name.contains(f)) {
                return true;
            }
        }
        return false;
    }
}
