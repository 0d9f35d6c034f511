package dev.fusegate;

import static dev.fusegate.Harness.appendAs;
import static dev.fusegate.Harness.check;
import static dev.fusegate.Harness.checkEq;
import static dev.fusegate.Harness.expectThrows;
import static dev.fusegate.Harness.fdsOf;
import static dev.fusegate.Harness.findExecutable;
import static dev.fusegate.Harness.isMounted;
import static dev.fusegate.Harness.listAs;
import static dev.fusegate.Harness.readAs;
import static dev.fusegate.Harness.run;
import static dev.fusegate.Harness.sleep;
import static dev.fusegate.Harness.waitFor;
import static dev.fusegate.Harness.writeAs;

import dev.fusegate.Harness.Fixture;
import dev.fusegate.Harness.Result;
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The JNI surface against a real mount in this JVM; access is checked from processes running
 * as app uids. The policy answers asserted are Android's scoped-storage rules (DESIGN.md §4).
 */
final class FuseGateTest {
    private FuseGateTest() {}

    // Apps of the tests.
    static final int APP_A = 10_001, APP_B = 10_002, APP_C = 10_003;
    static final String PKG_A = "com.example.a", PKG_B = "com.example.b";
    static final String IMAGE = "DCIM/x.jpg", PDF = "Download/doc.pdf", SONG = "Music/s.mp3";
    static final String SECRET = "Android/data/com.example.b/files/secret.txt";

    static void register(TestMain t) {
        t.add("mountServesAndCloseUnmounts", FuseGateTest::mountServesAndCloseUnmounts);
        t.add("setAppAndRemoveAppTakeEffectAtOnce", FuseGateTest::setAppAndRemoveAppTakeEffectAtOnce);
        t.add("grantAndRevokeTakeEffectAtOnce", FuseGateTest::grantAndRevokeTakeEffectAtOnce);
        t.add("privateAppDirsAreHiddenFromOtherApps", FuseGateTest::privateAppDirsAreHiddenFromOtherApps);
        t.add("appsOwnWhatTheyCreate", FuseGateTest::appsOwnWhatTheyCreate);
        t.add("statsCountUserspaceIo", FuseGateTest::statsCountUserspaceIo);
        t.add("statsCountPassthroughOpens", FuseGateTest::statsCountPassthroughOpens);
        t.add("statsCountRedaction", FuseGateTest::statsCountRedaction);
        t.add("denialListenerHearsDenials", FuseGateTest::denialListenerHearsDenials);
        t.add("denialListenerMayRemoveItselfOrClose", FuseGateTest::denialListenerMayRemoveItself);
        t.add("badInputThrowsAndDaemonKeepsServing", FuseGateTest::badInputThrowsAndDaemonKeepsServing);
        t.add("nativeSideChecksInputOnItsOwn", FuseGateTest::nativeSideChecksInputOnItsOwn);
        t.add("failedMountsThrowIOException", FuseGateTest::failedMountsThrowIOException);
        t.add("attachRefusesFdsThatAreNotFuse", FuseGateTest::attachRefusesFdsThatAreNotFuse);
        t.add("attachServesAPremountedFd", FuseGateTest::attachServesAPremountedFd);
        t.add("panicBecomesIllegalStateException", FuseGateTest::panicBecomesIllegalStateException);
        t.add("closeTwiceAndFromManyThreads", FuseGateTest::closeTwiceAndFromManyThreads);
        t.add("closeWithFilesHeldOpen", FuseGateTest::closeWithFilesHeldOpen);
    }

    static Fixture standardTree(String tag) throws IOException {
        return new Fixture(tag)
                .file(IMAGE, "image-bytes")
                .file(PDF, "pdf-bytes")
                .file(SONG, "song-bytes")
                .file(SECRET, "secret-bytes")
                .file("Download/hello.txt", "hello");
    }

    // ---- lifecycle ------------------------------------------------------------------------

    static void mountServesAndCloseUnmounts() throws Exception {
        try (Fixture f = standardTree("life").mount()) {
            check(isMounted(f.mnt), "mounted");
            check(f.gate.isRunning(), "running");
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "root reads");
            // This JVM may use the mount too (the daemon's workers are not Java threads).
            checkEq("hello", new String(Files.readAllBytes(f.at("Download/hello.txt")),
                    StandardCharsets.UTF_8), "read from the JVM");
            f.gate.close();
            check(!isMounted(f.mnt), "unmounted by close()");
            check(!f.gate.isRunning(), "not running after close()");
            f.gate.close(); // idempotent
            FuseGate g = f.gate;
            expectThrows(IllegalStateException.class, "closed", () -> g.setApp(APP_A, new String[] {PKG_A}, 0));
            expectThrows(IllegalStateException.class, "closed", () -> g.removeApp(APP_A));
            expectThrows(IllegalStateException.class, "closed", () -> g.grant(APP_A, PDF, FuseGate.ACCESS_READ));
            expectThrows(IllegalStateException.class, "closed", () -> g.revoke(APP_A, PDF));
            expectThrows(IllegalStateException.class, "closed", () -> g.invalidate(PDF));
            expectThrows(IllegalStateException.class, "closed", g::passthroughActive);
            expectThrows(IllegalStateException.class, "closed", g::stats);
            expectThrows(IllegalStateException.class, "closed", () -> g.setDenialListener(d -> { }));
            // The native side refuses the stale id on its own too.
            long h = g.handleForTesting();
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeStats(h));
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeRemoveApp(h, APP_A));
            expectThrows(IllegalStateException.class, "closed",
                    () -> FuseGate.nativeSetDenialListener(h, null));
            FuseGate.nativeClose(h); // a stale id: nothing to do
        }
    }

    // ---- the policy, as pushed from Java --------------------------------------------------

    static void setAppAndRemoveAppTakeEffectAtOnce() throws Exception {
        try (Fixture f = standardTree("apps").mount()) {
            Path img = f.at(IMAGE), song = f.at(SONG);
            checkEq("EACCES", readAs(APP_A, img), "image, app without an entry");
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.READ_IMAGES);
            checkEq("OK:image-bytes", readAs(APP_A, img), "image with READ_IMAGES");
            checkEq("EACCES", readAs(APP_A, song), "audio with READ_IMAGES only");
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.READ_AUDIO);
            checkEq("EACCES", readAs(APP_A, img), "image after READ_IMAGES was taken away");
            checkEq("OK:song-bytes", readAs(APP_A, song), "audio with READ_AUDIO");
            f.gate.setApp(APP_A, new String[] {PKG_A},
                    FuseGate.READ_IMAGES | FuseGate.ACCESS_MEDIA_LOCATION);
            checkEq("OK:image-bytes", readAs(APP_A, img), "image with READ_IMAGES|ACCESS_MEDIA_LOCATION");
            checkEq("EACCES", readAs(APP_B, img), "another uid is not affected");
            f.gate.removeApp(APP_A);
            checkEq("EACCES", readAs(APP_A, img), "image after removeApp");
            f.gate.removeApp(APP_A); // removing twice is fine
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.MANAGE_EXTERNAL_STORAGE);
            checkEq("OK:pdf-bytes", readAs(APP_A, f.at(PDF)), "pdf with MANAGE_EXTERNAL_STORAGE");
            checkEq("OK:image-bytes", readAs(APP_A, img), "image with MANAGE_EXTERNAL_STORAGE");
            checkEq("OK:hello", readAs(1000, f.at("Download/hello.txt")), "system uid bypasses");
        }
    }

    static void grantAndRevokeTakeEffectAtOnce() throws Exception {
        try (Fixture f = standardTree("grants").mount()) {
            Path pdf = f.at(PDF);
            f.gate.setApp(APP_B, new String[] {PKG_B}, 0);
            checkEq("EACCES", readAs(APP_B, pdf), "pdf without a grant");
            f.gate.grant(APP_B, PDF, FuseGate.ACCESS_READ);
            checkEq("OK:pdf-bytes", readAs(APP_B, pdf), "pdf with a read grant");
            checkEq("EACCES", appendAs(APP_B, pdf, "!"), "writing with a read grant");
            checkEq("EACCES", readAs(APP_C, pdf), "the grant is only APP_B's");
            f.gate.grant(APP_B, PDF, FuseGate.ACCESS_WRITE);
            checkEq("OK", appendAs(APP_B, pdf, "!"), "writing with a write grant");
            checkEq("OK:pdf-bytes!", readAs(APP_B, pdf), "a write grant includes reading");
            f.gate.revoke(APP_B, PDF);
            checkEq("EACCES", readAs(APP_B, pdf), "pdf after revoke");
            checkEq("EACCES", appendAs(APP_B, pdf, "?"), "writing after revoke");
            // Grant paths are matched case-insensitively, like the FAT volume apps expect.
            f.gate.grant(APP_B, "download/DOC.PDF", FuseGate.ACCESS_READ);
            checkEq("OK:pdf-bytes!", readAs(APP_B, pdf), "grant in another case");
            f.gate.revoke(APP_B, PDF);
            checkEq("EACCES", readAs(APP_B, pdf), "revoke in another case");
            f.gate.revoke(APP_B, PDF); // revoking what is not granted is fine
            f.gate.invalidate(PDF);
            f.gate.invalidate("Download");
            checkEq("EACCES", readAs(APP_B, pdf), "still denied after invalidate");
        }
    }

    static void privateAppDirsAreHiddenFromOtherApps() throws Exception {
        try (Fixture f = standardTree("private").mount()) {
            Path secret = f.at(SECRET);
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.MANAGE_EXTERNAL_STORAGE);
            f.gate.setApp(APP_B, new String[] {PKG_B}, 0);
            checkEq("ENOENT", readAs(APP_A, secret), "another app's data dir, even with all-files access");
            checkEq("OK:secret-bytes", readAs(APP_B, secret), "the owning package");
            checkEq("", listAs(APP_A, f.at("Android/data")), "Android/data listed by another app");
            checkEq(PKG_B, listAs(APP_B, f.at("Android/data")), "Android/data listed by the owner");
            // A shared uid holding both packages.
            f.gate.setApp(APP_A, new String[] {PKG_A, PKG_B}, 0);
            checkEq("OK:secret-bytes", readAs(APP_A, secret), "shared uid with the package");
            f.gate.removeApp(APP_A);
            checkEq("ENOENT", readAs(APP_A, secret), "after removeApp");
            checkEq("OK:secret-bytes", readAs(0, secret), "root");
        }
    }

    static void appsOwnWhatTheyCreate() throws Exception {
        try (Fixture f = standardTree("owners").mount()) {
            f.gate.setApp(APP_A, new String[] {PKG_A}, 0);
            f.gate.setApp(APP_B, new String[] {PKG_B}, 0);
            Path mine = f.at("Download/mine.txt");
            checkEq("OK", writeAs(APP_A, mine, "mine"), "creating in Download");
            checkEq("OK:mine", readAs(APP_A, mine), "the creator reads its file");
            checkEq("EACCES", readAs(APP_B, mine), "another app reads it");
            checkEq("EACCES", appendAs(APP_B, mine, "x"), "another app writes it");
            checkEq("OK:mine", readAs(1000, mine), "a system uid");
            checkEq("EACCES", readAs(99_000, mine), "an isolated uid");
            checkEq("EPERM", writeAs(APP_A, f.at("DCIM/doc.pdf"), "x"), "a pdf in DCIM");
            checkEq("EACCES", writeAs(APP_A, f.at("top.txt"), "x"), "a file in the root");
            // The owner is recorded by package: a new uid for the same package owns it too.
            f.gate.setApp(APP_C, new String[] {PKG_A}, 0);
            f.gate.removeApp(APP_A);
            checkEq("OK:mine", readAs(APP_C, mine), "the same package under another uid");
        }
    }

    // ---- statistics -------------------------------------------------------------------------

    static void statsCountUserspaceIo() throws Exception {
        Options userspace = Options.builder().passthrough(false).threads(1).build();
        try (Fixture f = standardTree("stats").mount(userspace)) {
            check(!f.gate.passthroughActive(), "passthrough off as configured");
            Stats s0 = f.gate.stats();
            check(!s0.isPassthroughActive(), "stats: passthrough off");
            for (int i = 0; i < 3; i++) {
                checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "read " + i);
            }
            Result w = run(0, "sh", "-c", "head -c 1000 /dev/zero > \"$1\"", "sh",
                    f.at("Download/zeros").toString());
            checkEq(0, w.exit, "writing 1000 bytes: " + w);
            waitFor("files released", 5000, () -> f.gate.stats().getOpenFiles() == 0);
            Stats s1 = f.gate.stats();
            check(s1.getRequests() > s0.getRequests(), "requests grew: " + s1);
            check(s1.getUserspaceOpens() >= s0.getUserspaceOpens() + 4, "userspace opens: " + s1);
            checkEq(0L, s1.getPassthroughOpens(), "no passthrough opens");
            check(s1.getBytesRead() >= s0.getBytesRead() + 15, "bytes read: " + s1);
            check(s1.getBytesWritten() >= s0.getBytesWritten() + 1000, "bytes written: " + s1);
            check(s1.getNodes() > 0, "nodes: " + s1);
            Map<String, Long> ops = s1.getRequestsByOpcode();
            for (String op : new String[] {"init", "lookup", "open", "read", "write", "release"}) {
                check(ops.getOrDefault(op, 0L) > 0, "opcode " + op + " counted: " + ops);
            }
            long sum = 0;
            for (long n : ops.values()) {
                sum += n;
            }
            checkEq(s1.getRequests(), sum, "requests = sum by opcode");
            expectThrows(UnsupportedOperationException.class, "",
                    () -> ops.put("open", 0L));

            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "a denied read");
            Stats s2 = f.gate.stats();
            checkEq(s1.getDenials() + 1, s2.getDenials(), "denials counted");
            check(s2.getErrors() > s1.getErrors(), "errors counted");
            checkEq(0L, s2.getDenialsDropped(), "nothing dropped");
        }
    }

    static void statsCountRedaction() throws Exception {
        try (Fixture f = standardTree("rstats").mount()) {
            // A real photo with GPS, made by ImageMagick and exiftool (scripts/install-deps.sh).
            Result made = run(0, "sh", "-c", "convert -size 32x24 xc:gray \"$1\" && exiftool -q -q "
                    + "-overwrite_original -GPSLatitude=48.8577 -GPSLatitudeRef=N \"$1\"", "sh",
                    f.lower.resolve("DCIM/gps.jpg").toString());
            checkEq(0, made.exit, "making a photo with GPS: " + made);
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.READ_IMAGES);
            Path photo = f.at("DCIM/gps.jpg");
            Stats s0 = f.gate.stats();
            checkEq(0, run(APP_A, "cat", "--", photo.toString()).exit, "redacted read");
            Stats s1 = f.gate.stats();
            checkEq(s0.getRedactedOpens() + 1, s1.getRedactedOpens(), "redacted opens: " + s1);
            check(s1.getBytesZeroed() > s0.getBytesZeroed(), "bytes zeroed: " + s1);
            check(s1.getFinderRuns() > s0.getFinderRuns(), "finder runs: " + s1);
            check(s1.getFinderNanos() > s0.getFinderNanos(), "finder time: " + s1);
            check(s1.getRangeCacheMisses() > s0.getRangeCacheMisses(), "cache misses: " + s1);
            checkEq(0, run(APP_A, "cat", "--", photo.toString()).exit, "second redacted read");
            Stats s2 = f.gate.stats();
            check(s2.getRangeCacheHits() > s1.getRangeCacheHits(), "cache hits: " + s2);
            checkEq(s1.getFinderRuns(), s2.getFinderRuns(), "the same version is not read again");
            checkEq(0L, s2.getFinderErrors(), "no finder errors");
            checkEq(0L, s2.getFinderConservative(), "a tool-made photo needs no guessing");
        }
    }

    static void statsCountPassthroughOpens() throws Exception {
        try (Fixture f = standardTree("pstats").mount()) {
            boolean active = f.gate.passthroughActive();
            checkEq(active, f.gate.stats().isPassthroughActive(), "stats agree");
            Stats s0 = f.gate.stats();
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "read");
            Stats s1 = f.gate.stats();
            if (active) {
                checkEq(s0.getPassthroughOpens() + 1, s1.getPassthroughOpens(), "passthrough opens");
                checkEq(s0.getBytesRead(), s1.getBytesRead(), "passthrough reads bypass the daemon");
            } else {
                System.out.println("    (kernel without passthrough: userspace opens checked)");
                checkEq(s0.getUserspaceOpens() + 1, s1.getUserspaceOpens(), "userspace opens");
            }
        }
    }

    // ---- denial listener --------------------------------------------------------------------

    static List<Thread> dispatcherThreads() {
        List<Thread> found = new ArrayList<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith("fusegate-denials-") && t.isAlive()) {
                found.add(t);
            }
        }
        return found;
    }

    static Denial await(LinkedBlockingQueue<Denial> q, int uid, String path) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        List<Denial> seen = new ArrayList<>();
        while (System.nanoTime() < deadline) {
            Denial d = q.poll(50, TimeUnit.MILLISECONDS);
            if (d == null) {
                continue;
            }
            if (d.getUid() == uid && d.getPath().equals(path)) {
                return d;
            }
            seen.add(d);
        }
        throw new AssertionError("no denial for uid " + uid + " on " + path + " heard; heard " + seen);
    }

    static void denialListenerHearsDenials() throws Exception {
        try (Fixture f = standardTree("listener").mount()) {
            check(dispatcherThreads().isEmpty(), "no dispatcher before a listener is set");
            LinkedBlockingQueue<Denial> heard = new LinkedBlockingQueue<>();
            List<String> threads = Collections.synchronizedList(new ArrayList<>());
            f.gate.setDenialListener(batch -> {
                threads.add(Thread.currentThread().getName() + (Thread.currentThread().isDaemon() ? "/daemon" : ""));
                heard.addAll(batch);
                expectThrows(UnsupportedOperationException.class, "", batch::clear);
            });
            checkEq(1, dispatcherThreads().size(), "one dispatcher thread");
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "denied read");
            Denial d = await(heard, APP_A, IMAGE);
            checkEq("read", d.getOperation(), "operation");
            checkEq(Denial.EACCES, d.getErrno(), "errno");
            checkEq("EACCES", d.getErrnoName(), "errno name");
            checkEq("ENOENT", readAs(APP_A, f.at(SECRET)), "hidden path");
            // Hidden at the lookup of the other package's directory.
            Denial hidden = await(heard, APP_A, "Android/data/com.example.b");
            checkEq(Denial.ENOENT, hidden.getErrno(), "errno of a hidden path");
            checkEq("lookup", hidden.getOperation(), "operation of a hidden path");
            String t = threads.get(0);
            check(t.startsWith("fusegate-denials-") && t.endsWith("/daemon"),
                    "delivered on the dispatcher, a daemon thread: " + t);

            // A listener that throws is logged; the daemon and the dispatcher go on.
            AtomicInteger thrown = new AtomicInteger();
            f.gate.setDenialListener(batch -> {
                thrown.incrementAndGet();
                throw new RuntimeException("listener failure (expected by the test)");
            });
            checkEq("EACCES", readAs(APP_B, f.at(IMAGE)), "denied read");
            waitFor("the throwing listener to be called", 10_000, () -> thrown.get() > 0);
            checkEq(1, dispatcherThreads().size(), "replacing keeps the one dispatcher");
            f.gate.setDenialListener(batch -> heard.addAll(batch));
            checkEq("EACCES", readAs(APP_C, f.at(IMAGE)), "denied read");
            await(heard, APP_C, IMAGE);

            // Removed: the dispatcher has ended (and detached) when the call returns.
            f.gate.setDenialListener(null);
            check(dispatcherThreads().isEmpty(), "dispatcher gone after removal: " + dispatcherThreads());
            heard.clear();
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "denied read");
            sleep(700);
            check(heard.isEmpty(), "nothing heard after removal: " + heard);
            f.gate.setDenialListener(null); // removing twice is fine

            // close() ends the dispatcher too.
            f.gate.setDenialListener(batch -> heard.addAll(batch));
            checkEq(1, dispatcherThreads().size(), "dispatcher restarted");
            checkEq("EACCES", readAs(APP_B, f.at(PDF)), "denied read");
            await(heard, APP_B, PDF);
            f.gate.close();
            check(dispatcherThreads().isEmpty(), "dispatcher gone after close: " + dispatcherThreads());
        }
    }

    static void denialListenerMayRemoveItself() throws Exception {
        try (Fixture f = standardTree("selfremove").mount()) {
            AtomicInteger calls = new AtomicInteger();
            CountDownLatch returned = new CountDownLatch(1);
            FuseGate g = f.gate;
            g.setDenialListener(batch -> {
                calls.incrementAndGet();
                g.setDenialListener(null); // from the dispatcher thread itself: must not deadlock
                returned.countDown();
            });
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "denied read");
            check(returned.await(10, TimeUnit.SECONDS), "the listener removed itself");
            waitFor("the dispatcher to end", 5000, () -> dispatcherThreads().isEmpty());
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "denied read");
            sleep(500);
            checkEq(1, calls.get(), "called once");
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "still serving");

            // A listener may call any method, close() included, while a close() races it.
            CountDownLatch closedInside = new CountDownLatch(1);
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            g.setDenialListener(batch -> {
                try {
                    check(g.stats().getDenials() > 0, "stats from inside the listener");
                    g.setApp(APP_B, new String[] {PKG_B}, 0);
                    g.close();
                } catch (Throwable e) {
                    errors.add(e);
                }
                closedInside.countDown();
            });
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "denied read");
            Thread racer = new Thread(() -> {
                try {
                    closedInside.await(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    return;
                }
                g.close();
            });
            racer.start();
            check(closedInside.await(10, TimeUnit.SECONDS), "the listener ran");
            racer.join(20_000);
            check(!racer.isAlive(), "a racing close() returned");
            check(errors.isEmpty(), "no errors inside the listener: " + errors);
            check(!isMounted(f.mnt), "closed from inside the listener");
            waitFor("the dispatcher to end", 5000, () -> dispatcherThreads().isEmpty());
            expectThrows(IllegalStateException.class, "closed", g::stats);
        }
    }

    // ---- bad input ---------------------------------------------------------------------------

    static void badInputThrowsAndDaemonKeepsServing() throws Exception {
        try (Fixture f = standardTree("badinput").mount()) {
            FuseGate g = f.gate;
            Class<IllegalArgumentException> iae = IllegalArgumentException.class;
            String[] pkgs = {PKG_A};
            int read = FuseGate.ACCESS_READ;

            expectThrows(iae, "uid", () -> g.setApp(-1, pkgs, 0));
            expectThrows(iae, "uid", () -> g.setApp(Integer.MIN_VALUE, pkgs, 0));
            expectThrows(iae, "packages is null", () -> g.setApp(APP_A, null, 0));
            expectThrows(iae, "packages[1] is null", () -> g.setApp(APP_A, new String[] {PKG_A, null}, 0));
            expectThrows(iae, "packages[0] is empty", () -> g.setApp(APP_A, new String[] {""}, 0));
            expectThrows(iae, "package", () -> g.setApp(APP_A, new String[] {"a/b"}, 0));
            expectThrows(iae, "package", () -> g.setApp(APP_A, new String[] {".."}, 0));
            expectThrows(iae, "package", () -> g.setApp(APP_A, new String[] {"a\nb"}, 0));
            expectThrows(iae, "permission bits 0x80", () -> g.setApp(APP_A, pkgs, 128));
            expectThrows(iae, "permission", () -> g.setApp(APP_A, pkgs, -1));
            expectThrows(iae, "uid", () -> g.removeApp(-2));

            expectThrows(iae, "uid", () -> g.grant(-5, PDF, read));
            expectThrows(iae, "path is null", () -> g.grant(APP_A, null, read));
            expectThrows(iae, "path is empty", () -> g.grant(APP_A, "", read));
            expectThrows(iae, "absolute", () -> g.grant(APP_A, "/" + PDF, read));
            expectThrows(iae, "invalid path", () -> g.grant(APP_A, "Download/../Download/doc.pdf", read));
            expectThrows(iae, "invalid path", () -> g.grant(APP_A, "..", read));
            expectThrows(iae, "invalid path", () -> g.grant(APP_A, "Download//doc.pdf", read));
            expectThrows(iae, "invalid path", () -> g.grant(APP_A, "./Download/doc.pdf", read));
            expectThrows(iae, "invalid path", () -> g.grant(APP_A, "Download/", read));
            expectThrows(iae, "NUL", () -> g.grant(APP_A, "Download/a\0b", read));
            expectThrows(iae, "access", () -> g.grant(APP_A, PDF, 0));
            expectThrows(iae, "access", () -> g.grant(APP_A, PDF, 4));
            expectThrows(iae, "access", () -> g.grant(APP_A, PDF, -1));
            expectThrows(iae, "uid", () -> g.revoke(-1, PDF));
            expectThrows(iae, "path is null", () -> g.revoke(APP_A, null));
            expectThrows(iae, "invalid path", () -> g.revoke(APP_A, "../etc/passwd"));
            expectThrows(iae, "absolute", () -> g.revoke(APP_A, "/etc/passwd"));
            expectThrows(iae, "path is null", () -> g.invalidate(null));
            expectThrows(iae, "path is empty", () -> g.invalidate(""));
            expectThrows(iae, "absolute", () -> g.invalidate("/DCIM"));
            expectThrows(iae, "invalid path", () -> g.invalidate("DCIM/.."));

            expectThrows(iae, "threads", () -> Options.builder().threads(0));
            expectThrows(iae, "threads", () -> Options.builder().threads(Options.MAX_THREADS + 1));
            expectThrows(iae, "cache timeout", () -> Options.builder().cacheTimeoutMillis(-1));
            expectThrows(iae, "cache timeout", () -> Options.builder().cacheTimeout(2, TimeUnit.DAYS));
            expectThrows(iae, "unit is null", () -> Options.builder().cacheTimeout(1, null));
            expectThrows(iae, "mountPoint is null", () -> FuseGate.mount(null, f.lower.toString(), Options.defaults()));
            expectThrows(iae, "mountPoint is empty", () -> FuseGate.mount("", f.lower.toString(), Options.defaults()));
            expectThrows(iae, "absolute", () -> FuseGate.mount("relative/mnt", f.lower.toString(), Options.defaults()));
            expectThrows(iae, "lowerRoot is null", () -> FuseGate.mount(f.mnt.toString(), null, Options.defaults()));
            expectThrows(iae, "options is null", () -> FuseGate.mount(f.mnt.toString(), f.lower.toString(), null));
            expectThrows(iae, "negative", () -> FuseGate.attach(-1, f.lower.toString(), Options.defaults()));
            expectThrows(iae, "lowerRoot is empty", () -> FuseGate.attach(0, "", Options.defaults()));

            // The daemon kept serving through all of it, with the policy it had.
            check(g.isRunning(), "still running");
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "root still served");
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "app still judged");
            g.setApp(APP_A, pkgs, FuseGate.READ_IMAGES);
            checkEq("OK:image-bytes", readAs(APP_A, f.at(IMAGE)), "good input still works");
            checkEq(0L, g.stats().getMalformed(), "no malformed requests");
        }
    }

    /** The same bad input straight to the natives, past the Java checks: Rust refuses it too. */
    static void nativeSideChecksInputOnItsOwn() throws Exception {
        try (Fixture f = standardTree("native").mount()) {
            long h = f.gate.handleForTesting();
            Class<IllegalArgumentException> iae = IllegalArgumentException.class;
            String[] pkgs = {PKG_A};
            String lower = f.lower.toString();

            expectThrows(iae, "invalid uid -1", () -> FuseGate.nativeSetApp(h, -1, pkgs, 0));
            expectThrows(iae, "packages is null", () -> FuseGate.nativeSetApp(h, APP_A, null, 0));
            expectThrows(iae, "packages[0] is null", () -> FuseGate.nativeSetApp(h, APP_A, new String[] {null}, 0));
            expectThrows(iae, "packages[0] is empty", () -> FuseGate.nativeSetApp(h, APP_A, new String[] {""}, 0));
            expectThrows(iae, "invalid package name", () -> FuseGate.nativeSetApp(h, APP_A, new String[] {"x/y"}, 0));
            expectThrows(iae, "unknown permission bits 0x80", () -> FuseGate.nativeSetApp(h, APP_A, pkgs, 0xff));
            expectThrows(iae, "invalid uid", () -> FuseGate.nativeRemoveApp(h, -7));
            expectThrows(iae, "invalid uid", () -> FuseGate.nativeGrant(h, -1, PDF, 1));
            expectThrows(iae, "path is null", () -> FuseGate.nativeGrant(h, APP_A, null, 1));
            expectThrows(iae, "path is empty", () -> FuseGate.nativeGrant(h, APP_A, "", 1));
            expectThrows(iae, "invalid path", () -> FuseGate.nativeGrant(h, APP_A, "/abs/olute", 1));
            expectThrows(iae, "invalid path", () -> FuseGate.nativeGrant(h, APP_A, "a/../b", 1));
            expectThrows(iae, "invalid path", () -> FuseGate.nativeGrant(h, APP_A, "a//b", 1));
            expectThrows(iae, "NUL", () -> FuseGate.nativeGrant(h, APP_A, "a\0b", 1));
            expectThrows(iae, "unknown access 4", () -> FuseGate.nativeGrant(h, APP_A, PDF, 4));
            expectThrows(iae, "unknown access 0", () -> FuseGate.nativeGrant(h, APP_A, PDF, 0));
            expectThrows(iae, "invalid uid", () -> FuseGate.nativeRevoke(h, -1, PDF));
            expectThrows(iae, "invalid path", () -> FuseGate.nativeRevoke(h, APP_A, ".."));
            expectThrows(iae, "invalid path", () -> FuseGate.nativeInvalidate(h, "/DCIM"));
            expectThrows(iae, "path is null", () -> FuseGate.nativeInvalidate(h, null));
            expectThrows(iae, "mountPoint is null", () -> FuseGate.nativeMount(null, lower, 2, true, 0));
            expectThrows(iae, "absolute", () -> FuseGate.nativeMount("mnt", lower, 2, true, 0));
            expectThrows(iae, "threads", () -> FuseGate.nativeMount(f.mnt.toString(), lower, -1, true, 0));
            expectThrows(iae, "threads", () -> FuseGate.nativeMount(f.mnt.toString(), lower, 1000, true, 0));
            expectThrows(iae, "cache timeout", () -> FuseGate.nativeMount(f.mnt.toString(), lower, 2, true, -5));
            expectThrows(iae, "negative", () -> FuseGate.nativeAttach(-3, lower, 2, true, 0));
            expectThrows(iae, "lowerRoot is null", () -> FuseGate.nativeAttach(0, null, 2, true, 0));
            // Unknown handles are closed handles.
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeStats(h + 1_000_000));
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeGrant(-h, APP_A, PDF, 1));
            check(!FuseGate.nativeIsRunning(h + 1_000_000), "an unknown handle is not running");

            // Good input through the natives works, and the daemon is unharmed.
            FuseGate.nativeSetApp(h, APP_A, pkgs, FuseGate.READ_IMAGES);
            checkEq("OK:image-bytes", readAs(APP_A, f.at(IMAGE)), "native setApp");
            FuseGate.nativeGrant(h, APP_A, PDF, 3);
            checkEq("OK", appendAs(APP_A, f.at(PDF), "+"), "READ|WRITE is a write grant");
            check(f.gate.isRunning(), "still running");
        }
    }

    static void failedMountsThrowIOException() throws Exception {
        try (Fixture f = standardTree("failmount")) {
            String lower = f.lower.toString();
            Class<IOException> ioe = IOException.class;
            expectThrows(ioe, "does not exist", () -> FuseGate.mount(f.root.resolve("nowhere").toString(), lower, Options.defaults()));
            Path file = Files.write(f.root.resolve("plain-file"), new byte[] {1});
            expectThrows(ioe, "not a directory", () -> FuseGate.mount(file.toString(), lower, Options.defaults()));
            expectThrows(ioe, "No such file or directory", () -> FuseGate.mount(f.mnt.toString(), f.root.resolve("nolower").toString(), Options.defaults()));
            check(!isMounted(f.mnt), "no mount left behind by a failed start");
            f.mount();
            IOException e = expectThrows(ioe, "already a mount point", () -> FuseGate.mount(f.mnt.toString(), lower, Options.defaults()));
            check(e.getMessage().contains(f.mnt.toString()), "names the path: " + e.getMessage());
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "the first mount still serves");
            // The system's reason is in the message.
            StringBuilder longName = new StringBuilder();
            for (int i = 0; i < 300; i++) {
                longName.append('n');
            }
            expectThrows(ioe, "File name too long (os error 36)", () -> FuseGate.mount(
                    f.root.resolve(longName.toString()).toString(), lower, Options.defaults()));
        }
    }

    static void attachRefusesFdsThatAreNotFuse() throws Exception {
        try (Fixture f = standardTree("attachbad")) {
            String lower = f.lower.toString();
            Path plain = Files.write(f.root.resolve("plain"), "still-mine".getBytes(StandardCharsets.UTF_8));
            try (RandomAccessFile raf = new RandomAccessFile(plain.toFile(), "r")) {
                List<Integer> fds = fdsOf(plain);
                checkEq(1, fds.size(), "one fd on the plain file");
                int fd = fds.get(0);
                expectThrows(IllegalArgumentException.class, "not a /dev/fuse",
                        () -> FuseGate.attach(fd, lower, Options.defaults()));
                // Refused, so not taken: the caller's fd is still open and usable.
                checkEq(fds, fdsOf(plain), "the fd is still open");
                checkEq("still-mine", raf.readLine(), "and still reads");
            }
            int unused = 1_000_000;
            expectThrows(IllegalArgumentException.class, "not an open file descriptor",
                    () -> FuseGate.attach(unused, lower, Options.defaults()));
            expectThrows(IllegalArgumentException.class, "not a /dev/fuse",
                    () -> FuseGate.attach(0, lower, Options.defaults()));
        }
    }

    /** Fds of /dev/fuse handed to attach(): never closed by Java (native code owns them now). */
    private static final List<RandomAccessFile> HANDED_OVER = new ArrayList<>();

    static final String MOUNT_HELPER = String.join("\n",
            "import ctypes, os, sys",
            "libc = ctypes.CDLL(None, use_errno=True)",
            "pid, fd, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]",
            "pidfd = os.pidfd_open(pid)",
            "local = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd: the JVM's /dev/fuse here",
            "if local < 0: sys.exit('pidfd_getfd: ' + os.strerror(ctypes.get_errno()))",
            "opts = ('fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other' % local).encode()",
            "MS_NOSUID, MS_NODEV = 2, 4",
            "if libc.mount(b'platform', target.encode(), b'fuse.platform', MS_NOSUID | MS_NODEV, opts) != 0:",
            "    sys.exit('mount: ' + os.strerror(ctypes.get_errno()))");

    /** Plays the platform (vold): opens /dev/fuse, mounts it, hands the fd over. */
    static void attachServesAPremountedFd() throws Exception {
        try (Fixture f = standardTree("attach")) {
            String python = findExecutable("python3");
            if (python == null) {
                throw new Harness.SkipException("python3 (to mount a /dev/fuse fd of this JVM) is missing");
            }
            Path devFuse = Paths.get("/dev/fuse");
            List<Integer> before = fdsOf(devFuse);
            RandomAccessFile raf = new RandomAccessFile(devFuse.toFile(), "rw");
            synchronized (HANDED_OVER) {
                HANDED_OVER.add(raf);
            }
            List<Integer> after = fdsOf(devFuse);
            after.removeAll(before);
            checkEq(1, after.size(), "one new /dev/fuse fd");
            int fd = after.get(0);
            Result m = run(0, python, "-c", MOUNT_HELPER,
                    Long.toString(ProcessHandle.current().pid()), Integer.toString(fd), f.mnt.toString());
            checkEq(0, m.exit, "mount helper: " + m);
            check(isMounted(f.mnt), "mounted by the platform");

            f.gate = FuseGate.attach(fd, f.lower.toString(), Options.builder().threads(2).build());
            check(!fdsOf(devFuse).contains(fd), "the handed-over fd now belongs to the daemon");
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "served through the fd");
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "with the policy");
            f.gate.setApp(APP_A, new String[] {PKG_A}, FuseGate.READ_IMAGES);
            checkEq("OK:image-bytes", readAs(APP_A, f.at(IMAGE)), "setApp on an attached daemon");
            check(f.gate.stats().getRequests() > 0, "counted");

            // Restart on the fd the gate holds: an open file, the policy pushed from Java and
            // the listener all carry over; apps see no error.
            List<String> created = Collections.synchronizedList(new ArrayList<>());
            f.gate.setEventListener(new FileEventListener() {
                @Override
                public void created(String path, int uid) {
                    created.add(path);
                }
            });
            try (FileInputStream held = new FileInputStream(f.at("Download/hello.txt").toFile())) {
                checkEq('h', (char) held.read(), "first byte before the restarts");
                f.gate.restart();
                f.gate.restart();
                checkEq("ello", new String(held.readAllBytes(), StandardCharsets.UTF_8),
                        "the open file reads on across two restarts");
            }
            checkEq("OK:image-bytes", readAs(APP_A, f.at(IMAGE)), "the pushed policy survived");
            checkEq("OK", writeAs(APP_A, f.at("Download/after-restart.txt"), "x"), "apps create");
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (!created.contains("Download/after-restart.txt") && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            check(created.contains("Download/after-restart.txt"),
                    "the listener hears the new server: " + created);
            f.gate.close();
            check(isMounted(f.mnt), "attach() does not unmount: that is the platform's job");
            checkEq(0, run(0, "umount", "-l", f.mnt.toString()).exit, "platform unmounts");
        }
    }

    static void panicBecomesIllegalStateException() throws Exception {
        for (int i = 0; i < 3; i++) {
            expectThrows(IllegalStateException.class, "internal error: deliberate panic",
                    FuseGate::nativePanicForTesting);
        }
        try (Fixture f = standardTree("panic").mount()) {
            expectThrows(IllegalStateException.class, "internal error", FuseGate::nativePanicForTesting);
            checkEq("OK:hello", readAs(0, f.at("Download/hello.txt")), "serving after a panic");
            // A gate that mounted holds no session to restart on (attach() gives one).
            expectThrows(IllegalStateException.class, "only a session handed over", f.gate::restart);
            f.gate.setApp(APP_A, new String[] {PKG_A}, 0);
        }
    }

    static void closeTwiceAndFromManyThreads() throws Exception {
        try (Fixture f = standardTree("closes").mount()) {
            FuseGate g = f.gate;
            g.setDenialListener(batch -> { });
            CountDownLatch go = new CountDownLatch(1);
            List<Thread> threads = new ArrayList<>();
            List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < 8; i++) {
                Thread t = new Thread(() -> {
                    try {
                        go.await();
                        g.close();
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                });
                t.start();
                threads.add(t);
            }
            go.countDown();
            for (Thread t : threads) {
                t.join(20_000);
                check(!t.isAlive(), "close() returned");
            }
            check(errors.isEmpty(), "no errors: " + errors);
            check(!isMounted(f.mnt), "unmounted");
            g.close();
            g.close();
        }
    }

    static void closeWithFilesHeldOpen() throws Exception {
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 1000; i++) {
            big.append(String.format("line %05d\n", i));
        }
        String content = big.toString();
        try (Fixture f = standardTree("held").file("Download/held.txt", content).mount()) {
            boolean passthrough = f.gate.passthroughActive();
            Path held = f.at("Download/held.txt");
            // Held by this JVM...
            InputStream in = new FileInputStream(held.toFile());
            byte[] head = new byte[100];
            checkEq(100, in.read(head), "first bytes");
            // ...and by another process (a system uid). It reads with dd, not cat: after the
            // daemon is gone, read() on a passthrough file works but fstat() may need a
            // GETATTR (atime was invalidated by an earlier read) and fails with ENOTCONN.
            ProcessBuilder pb = new ProcessBuilder("/usr/bin/setpriv", "--reuid", "1000", "--regid", "1000",
                    "--clear-groups", "sh", "-c", "exec 3<\"$1\"; echo opened; read go; dd bs=4096 <&3 2>/dev/null | wc -c",
                    "sh", held.toString());
            pb.redirectError(ProcessBuilder.Redirect.INHERIT);
            Process p = pb.start();
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            checkEq("opened", out.readLine(), "the other process opened it");
            waitFor("two open files", 5000, () -> f.gate.stats().getOpenFiles() == 2);

            long t0 = System.nanoTime();
            f.gate.close();
            long ms = (System.nanoTime() - t0) / 1_000_000;
            check(ms < 10_000, "close() took " + ms + " ms");
            check(!isMounted(f.mnt), "detached from the namespace at once");

            byte[] rest = new byte[content.length()];
            int n = 0;
            try {
                int r;
                while ((r = in.read(rest, n, rest.length - n)) > 0) {
                    n += r;
                }
                if (passthrough) {
                    checkEq(content.substring(100), new String(rest, 0, n, StandardCharsets.UTF_8),
                            "a passthrough file keeps working after close()");
                }
            } catch (IOException e) {
                check(!passthrough, "passthrough file failed after close(): " + e);
            }
            in.close();
            p.getOutputStream().write("go\n".getBytes(StandardCharsets.UTF_8));
            p.getOutputStream().flush();
            String count = out.readLine();
            check(p.waitFor(10, TimeUnit.SECONDS), "the other process finished");
            if (passthrough) {
                checkEq(Integer.toString(content.length()), count == null ? null : count.trim(),
                        "the other process read it all after close()");
            }
        }
    }
}
