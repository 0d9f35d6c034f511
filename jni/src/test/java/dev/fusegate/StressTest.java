package dev.fusegate;

import static dev.fusegate.Harness.check;
import static dev.fusegate.Harness.checkEq;
import static dev.fusegate.Harness.expectThrows;
import static dev.fusegate.Harness.readAs;
import static dev.fusegate.Harness.run;

import dev.fusegate.Harness.Fixture;
import dev.fusegate.Harness.Result;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Java threads change apps, grants and listeners and read statistics while processes read and
 * write through the mount, for a bounded time (FUSEGATE_STRESS_SECONDS, default 5). Fails on
 * a crash, a hang (deadlock), or an answer the policy cannot give: apps whose entry never
 * changes must get the same answer every time; apps being changed must get one of the two
 * answers their changing entries allow, never an I/O error.
 */
final class StressTest {
    private StressTest() {}

    static void register(TestMain t) {
        long seconds = seconds();
        t.add("stressPolicyChangesWhileServing", (seconds + 60) * 1000, () -> stress(seconds));
    }

    static long seconds() {
        String s = System.getenv("FUSEGATE_STRESS_SECONDS");
        return s == null ? 5 : Math.max(1, Long.parseLong(s));
    }

    static final int STEADY_ALLOWED = 10_100, STEADY_DENIED = 10_101, CHANGING = 10_200;
    static final int CHANGING_COUNT = 4;

    /** Reads {@code file} {@code n} times in one process; one line per read. */
    static final String READ_LOOP = String.join("\n",
            "f=$1; n=$2; i=0",
            "while [ $i -lt $n ]; do",
            "  if out=$(cat \"$f\" 2>&1); then echo \"OK:$out\"",
            "  else case \"$out\" in",
            "    *'Permission denied'*) echo EACCES;;",
            "    *'No such file'*) echo ENOENT;;",
            "    *) echo \"ERR:$out\";;",
            "  esac; fi",
            "  i=$((i+1))",
            "done");

    /** Creates, writes and reads back {@code n} files in one process; one line per file. */
    static final String WRITE_LOOP = String.join("\n",
            "d=$1; n=$2; tag=$3; i=0",
            "while [ $i -lt $n ]; do",
            "  f=\"$d/$tag-$i.txt\"",
            "  if printf '%s' \"$tag-$i\" > \"$f\" && [ \"$(cat \"$f\")\" = \"$tag-$i\" ]; then echo OK",
            "  else echo \"ERR:$i\"; fi",
            "  i=$((i+1))",
            "done");

    static void stress(long seconds) throws Exception {
        try (Fixture f = new Fixture("stress")
                .file("Download/steady.pdf", "steady")
                .file("Download/flux.pdf", "flux")
                .file("DCIM/p.jpg", "picture")
                .mount(Options.builder().threads(2).build())) {
            FuseGate g = f.gate;
            g.setApp(STEADY_ALLOWED, new String[] {"com.stress.allowed"}, FuseGate.MANAGE_EXTERNAL_STORAGE);
            g.setApp(STEADY_DENIED, new String[] {"com.stress.denied"}, 0);
            AtomicLong heard = new AtomicLong();
            DenialListener listener = batch -> heard.addAndGet(batch.size());
            g.setDenialListener(listener);

            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
            List<String> wrong = Collections.synchronizedList(new ArrayList<>());
            AtomicLong reads = new AtomicLong(), writes = new AtomicLong(), changes = new AtomicLong();
            List<Thread> threads = new ArrayList<>();

            // Readers and writers: processes as app uids and root.
            threads.add(reader("steady-allowed", f, deadline, wrong, reads,
                    i -> STEADY_ALLOWED, "Download/steady.pdf", set("OK:steady")));
            threads.add(reader("steady-denied", f, deadline, wrong, reads,
                    i -> STEADY_DENIED, "Download/steady.pdf", set("EACCES")));
            threads.add(reader("changing-pdf", f, deadline, wrong, reads,
                    i -> CHANGING + (int) (i % CHANGING_COUNT), "Download/flux.pdf", set("OK:flux", "EACCES")));
            threads.add(reader("changing-image", f, deadline, wrong, reads,
                    i -> CHANGING + (int) ((i + 1) % CHANGING_COUNT), "DCIM/p.jpg", set("OK:picture", "EACCES")));
            threads.add(writer("root-writer", f, deadline, wrong, writes, 0));
            threads.add(writer("app-writer", f, deadline, wrong, writes, STEADY_ALLOWED));

            // Java threads changing the policy and reading state.
            threads.add(loop("apps", deadline, wrong, (rnd, i) -> {
                int uid = CHANGING + rnd.nextInt(CHANGING_COUNT);
                if (rnd.nextInt(4) == 0) {
                    g.removeApp(uid);
                } else {
                    int[] choices = {0, FuseGate.READ_IMAGES, FuseGate.MANAGE_EXTERNAL_STORAGE,
                            FuseGate.READ_IMAGES | FuseGate.READ_VIDEO | FuseGate.READ_AUDIO,
                            FuseGate.WRITE_MEDIA};
                    g.setApp(uid, new String[] {"com.stress.c" + uid}, choices[rnd.nextInt(choices.length)]);
                }
                changes.incrementAndGet();
            }));
            threads.add(loop("grants", deadline, wrong, (rnd, i) -> {
                int uid = CHANGING + rnd.nextInt(CHANGING_COUNT);
                String path = rnd.nextBoolean() ? "Download/flux.pdf" : "download/FLUX.pdf";
                if (rnd.nextBoolean()) {
                    g.grant(uid, path, rnd.nextBoolean() ? FuseGate.ACCESS_READ : FuseGate.ACCESS_WRITE);
                } else {
                    g.revoke(uid, path);
                }
                if (i % 10 == 0) {
                    g.grant(uid, "DCIM/p.jpg", FuseGate.ACCESS_READ);
                } else if (i % 10 == 5) {
                    g.revoke(uid, "DCIM/p.jpg");
                }
                changes.incrementAndGet();
            }));
            threads.add(loop("state", deadline, wrong, new Step() {
                long lastRequests;

                @Override
                public void run(Random rnd, long i) {
                    Stats s = g.stats();
                    if (s.getRequests() < lastRequests) {
                        wrong.add("requests went down: " + lastRequests + " -> " + s.getRequests());
                    }
                    lastRequests = s.getRequests();
                    if (g.passthroughActive() != s.isPassthroughActive()) {
                        wrong.add("passthroughActive disagrees with stats");
                    }
                    g.invalidate(rnd.nextBoolean() ? "Download/flux.pdf" : "DCIM");
                    if (i % 50 == 0) {
                        g.setDenialListener((i / 50) % 2 == 0 ? null : listener);
                    }
                    // Bad input under load: refused, harmless.
                    expectThrows(IllegalArgumentException.class, "invalid path",
                            () -> g.grant(CHANGING, "Download/../steady.pdf", FuseGate.ACCESS_READ));
                    expectThrows(IllegalArgumentException.class, "uid",
                            () -> FuseGate.nativeSetApp(g.handleForTesting(), -1, new String[] {"x"}, 0));
                }
            }));

            for (Thread t : threads) {
                t.start();
            }
            for (Thread t : threads) {
                t.join(TimeUnit.SECONDS.toMillis(seconds + 40));
                check(!t.isAlive(), "thread " + t.getName() + " still running: deadlock?");
            }
            System.out.println("    stress: " + seconds + " s, " + reads + " reads, " + writes
                    + " files written, " + changes + " policy changes, " + heard + " denials heard; "
                    + g.stats());
            check(wrong.isEmpty(), wrong.size() + " wrong answers, first: "
                    + wrong.subList(0, Math.min(5, wrong.size())));
            check(reads.get() > 0 && writes.get() > 0 && changes.get() > 0, "work was done");

            // Afterwards the answers follow the last change, at once.
            check(g.isRunning(), "still running");
            g.setApp(CHANGING, new String[] {"com.stress.c" + CHANGING}, 0);
            g.revoke(CHANGING, "Download/flux.pdf");
            checkEq("EACCES", readAs(CHANGING, f.at("Download/flux.pdf")), "after the storm, denied");
            g.grant(CHANGING, "Download/flux.pdf", FuseGate.ACCESS_READ);
            checkEq("OK:flux", readAs(CHANGING, f.at("Download/flux.pdf")), "after the storm, granted");
            check(heard.get() > 0, "the listener heard denials during the storm");
        }
    }

    interface Uid {
        int of(long iteration);
    }

    interface Step {
        void run(Random rnd, long iteration) throws Exception;
    }

    static Set<String> set(String... s) {
        return new HashSet<>(Arrays.asList(s));
    }

    static Thread loop(String name, long deadline, List<String> wrong, Step step) {
        return new Thread(() -> {
            Random rnd = new Random(name.hashCode());
            long i = 0;
            try {
                while (System.nanoTime() < deadline) {
                    step.run(rnd, i++);
                    Thread.sleep(1);
                }
            } catch (Throwable e) {
                wrong.add(name + " threw " + e);
            }
        }, "stress-" + name);
    }

    static Thread reader(String name, Fixture f, long deadline, List<String> wrong, AtomicLong count,
            Uid uid, String rel, Set<String> allowed) {
        return new Thread(() -> {
            long i = 0;
            try {
                while (System.nanoTime() < deadline) {
                    int u = uid.of(i++);
                    Result r = run(u, "sh", "-c", READ_LOOP, "sh", f.at(rel).toString(), "20");
                    if (r.exit != 0) {
                        wrong.add(name + " uid " + u + ": " + r);
                    }
                    for (String line : r.out.split("\n")) {
                        if (line.isEmpty()) {
                            continue;
                        }
                        count.incrementAndGet();
                        if (!allowed.contains(line)) {
                            wrong.add(name + " uid " + u + " read " + rel + ": " + line);
                        }
                    }
                }
            } catch (Throwable e) {
                wrong.add(name + " threw " + e);
            }
        }, "stress-" + name);
    }

    static Thread writer(String name, Fixture f, long deadline, List<String> wrong, AtomicLong count,
            int uid) {
        return new Thread(() -> {
            long round = 0;
            try {
                while (System.nanoTime() < deadline) {
                    String tag = name + "-" + round++;
                    Result r = run(uid, "sh", "-c", WRITE_LOOP, "sh", f.at("Download").toString(), "10", tag);
                    for (String line : r.out.split("\n")) {
                        if (line.isEmpty()) {
                            continue;
                        }
                        count.incrementAndGet();
                        if (!line.equals("OK")) {
                            wrong.add(name + " uid " + uid + ": " + line + " (" + r.err.trim() + ")");
                        }
                    }
                    if (r.exit != 0) {
                        wrong.add(name + " uid " + uid + ": " + r);
                    }
                }
            } catch (Throwable e) {
                wrong.add(name + " threw " + e);
            }
        }, "stress-" + name);
    }
}
