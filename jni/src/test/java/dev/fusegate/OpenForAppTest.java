package dev.fusegate;

import static dev.fusegate.Harness.check;
import static dev.fusegate.Harness.checkEq;
import static dev.fusegate.Harness.expectThrows;
import static dev.fusegate.Harness.findExecutable;
import static dev.fusegate.Harness.run;
import static dev.fusegate.Harness.writeAs;

import dev.fusegate.Harness.Fixture;
import dev.fusegate.Harness.Result;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * {@link FuseGate#openForApp} answers exactly as the app's own open through the mount: the same
 * table of uids, paths and modes is opened both ways (the mount's side by a process running as
 * that uid, with the same flags) and the outcomes (OK or the errno name) must be equal. (Not in the table: a directory, which openForApp refuses with EISDIR even for
 * reading, and a symlink in the middle of a path, which the mount follows and openForApp does
 * not.) And 100,000 calls leak no fd and no node.
 */
final class OpenForAppTest {
    private OpenForAppTest() {}

    static final int APP_A = 10_021, APP_B = 10_022, APP_C = 10_023, SYSTEM = 1000,
            ISOLATED = 99_021, POSIX = 5_021;
    static final String PKG_A = "com.example.opa", PKG_B = "com.example.opb", PKG_C = "com.example.opc";

    static void register(TestMain t) {
        t.add("openForAppAnswersAsTheMount", OpenForAppTest::answersAsTheMount);
        t.add("openForAppFdsWorkAndNothingLeaks", 300_000, OpenForAppTest::fdsWorkAndNothingLeaks);
        t.add("openForAppRefusesBadInput", OpenForAppTest::refusesBadInput);
    }

    // ---- fds as a Java object (what ParcelFileDescriptor.adoptFd does on Android) ------------

    private static Field fdField;

    /** A FileDescriptor owning {@code fd} (java.io is opened to this test by run-tests.sh). */
    static FileDescriptor adopt(int fd) throws ReflectiveOperationException {
        synchronized (OpenForAppTest.class) {
            if (fdField == null) {
                fdField = FileDescriptor.class.getDeclaredField("fd");
                fdField.setAccessible(true);
            }
        }
        FileDescriptor d = new FileDescriptor();
        fdField.setInt(d, fd);
        return d;
    }

    static void close(int fd) throws Exception {
        new FileInputStream(adopt(fd)).close();
    }

    static int openFdCount() throws IOException {
        try (Stream<java.nio.file.Path> s = Files.list(Paths.get("/proc/self/fd"))) {
            return (int) s.count();
        }
    }

    /** openForApp's outcome: "OK" (the fd closed at once) or the errno name. */
    static String viaApi(FuseGate g, String path, int uid, int mode) throws Exception {
        try {
            int fd = g.openForApp(path, uid, mode);
            check(fd >= 0, "an fd: " + fd);
            close(fd);
            return "OK";
        } catch (ErrnoException e) {
            return e.getErrnoName();
        }
    }

    /**
     * Opens each "path flags" line as the caller with os.open(path, flags), adding O_NOFOLLOW
     * for a symlink (openForApp follows none; the kernel then answers ELOOP itself). Not for
     * other files: the mount answers a POSIX caller's O_NOFOLLOW open with ELOOP (data.rs
     * reopens /proc/self/fd/N with the caller's flags), a bug of its own.
     */
    static final String OPENER = String.join("\n",
            "import errno, os, sys",
            "for line in sys.argv[1:]:",
            "    path, flags = line.rsplit(' ', 1)",
            "    nofollow = os.O_NOFOLLOW if path.endswith('link.pdf') else 0",
            "    try:",
            "        os.close(os.open(path, int(flags) | nofollow))",
            "        print('OK')",
            "    except OSError as e:",
            "        print(errno.errorcode.get(e.errno, str(e.errno)))");

    static final int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_TRUNC = 0x200, O_APPEND = 0x400;

    /** The API mode and the open(2) flags of each case. */
    static Map<Integer, Integer> modes() {
        Map<Integer, Integer> m = new LinkedHashMap<>();
        m.put(FuseGate.parseMode("r"), O_RDONLY);
        m.put(FuseGate.parseMode("wa"), O_WRONLY | O_APPEND);
        m.put(FuseGate.parseMode("rw"), O_RDWR);
        m.put(FuseGate.parseMode("w"), O_WRONLY | O_TRUNC);
        m.put(FuseGate.MODE_WRITE_ONLY, O_WRONLY);
        m.put(FuseGate.parseMode("rwt"), O_RDWR | O_TRUNC);
        return m;
    }

    static Fixture tree(String tag) throws IOException {
        return new Fixture(tag)
                .file("DCIM/x.jpg", "image")
                .file("Music/s.mp3", "song")
                .file("Download/doc.pdf", "pdf")
                .file("Download/granted.pdf", "granted")
                .file("Download/wgranted.pdf", "wgranted")
                .file("Download/.hidden.txt", "hidden")
                .file("Download/nm/.nomedia", "")
                .file("Download/nm/inside.jpg", "inside")
                .file("Android/data/" + PKG_B + "/files/secret.txt", "secret")
                .file("Android/data/" + PKG_A + "/files/mine.txt", "mine");
    }

    static void answersAsTheMount() throws Exception {
        // The system's python3: one in root's home (pyenv) is not executable by app uids.
        String python = new java.io.File("/usr/bin/python3").canExecute() ? "/usr/bin/python3"
                : findExecutable("python3");
        if (python == null) {
            throw new Harness.SkipException("python3 (to open with exact flags as an app) is missing");
        }
        // No kernel cache: every lookup of every uid reaches the daemon, as openForApp's do
        // (with a cache, an isolated uid's lookup of a directory another uid looked up first
        // is answered by the kernel, where the daemon would say EACCES).
        try (Fixture f = tree("ofa").mount(Options.builder().cacheTimeoutMillis(0).build())) {
            FuseGate g = f.gate;
            g.setApp(APP_A, new String[] {PKG_A}, 0);
            g.setApp(APP_B, new String[] {PKG_B}, FuseGate.READ_IMAGES);
            g.setApp(APP_C, new String[] {PKG_C}, 0);
            g.grant(APP_C, "Download/granted.pdf", FuseGate.ACCESS_READ);
            g.grant(APP_C, "Download/wgranted.pdf", FuseGate.ACCESS_WRITE);
            checkEq("OK", writeAs(APP_A, f.at("Download/own.txt"), "own"), "an app's own file");
            Files.createSymbolicLink(f.lower.resolve("Download/link.pdf"), Paths.get("doc.pdf"));

            String[] paths = {"DCIM/x.jpg", "Music/s.mp3", "Download/doc.pdf", "Download/granted.pdf",
                    "Download/wgranted.pdf", "Download/.hidden.txt", "Download/nm/inside.jpg",
                    "Android/data/" + PKG_B + "/files/secret.txt",
                    "Android/data/" + PKG_A + "/files/mine.txt", "Download/own.txt",
                    "Download/missing.pdf", "Download/link.pdf",
                    "Download/doc.pdf/below"};
            int[] uids = {APP_A, APP_B, APP_C, ISOLATED, POSIX, SYSTEM, 0};
            Map<Integer, Integer> modes = modes();
            List<String> mismatches = new ArrayList<>();
            int cases = 0, allowed = 0;
            for (int uid : uids) {
                List<String> lines = new ArrayList<>();
                List<String[]> keys = new ArrayList<>();
                for (String path : paths) {
                    for (Map.Entry<Integer, Integer> m : modes.entrySet()) {
                        lines.add(f.at(path) + " " + m.getValue());
                        keys.add(new String[] {path, Integer.toString(m.getKey()), Integer.toString(m.getValue())});
                    }
                }
                List<String> argv = new ArrayList<>();
                argv.add(python);
                argv.add("-c");
                argv.add(OPENER);
                argv.addAll(lines);
                Result r = run(uid, argv.toArray(new String[0]));
                checkEq(0, r.exit, "opener as " + uid + ": " + r);
                String[] fuse = r.out.trim().split("\n");
                checkEq(keys.size(), fuse.length, "answers from the opener");
                for (int i = 0; i < keys.size(); i++) {
                    String path = keys.get(i)[0];
                    int mode = Integer.parseInt(keys.get(i)[1]);
                    String api = viaApi(g, path, uid, mode);
                    cases++;
                    if (api.equals("OK")) {
                        allowed++;
                    }
                    if (!api.equals(fuse[i])) {
                        mismatches.add("uid " + uid + " " + path + " flags 0" + Integer.toOctalString(
                                Integer.parseInt(keys.get(i)[2])) + ": mount " + fuse[i] + ", openForApp " + api);
                    }
                }
            }
            System.out.println("    " + cases + " cases, " + allowed + " allowed, "
                    + mismatches.size() + " differ");
            check(mismatches.isEmpty(), "openForApp differs from the mount:\n  "
                    + String.join("\n  ", mismatches));
            // The table covers what it claims: spot checks of the expected answers.
            checkEq("ENOENT", viaApi(g, "Android/data/" + PKG_B + "/files/secret.txt", APP_A,
                    FuseGate.MODE_READ_ONLY), "another app's private dir");
            checkEq("EACCES", viaApi(g, "Download/.hidden.txt", APP_A, FuseGate.MODE_READ_ONLY), "hidden file");
            checkEq("OK", viaApi(g, "Download/granted.pdf", APP_C, FuseGate.MODE_READ_ONLY), "read grant");
            checkEq("EACCES", viaApi(g, "Download/granted.pdf", APP_C, FuseGate.MODE_READ_WRITE),
                    "write with a read grant");
            checkEq("OK", viaApi(g, "Download/wgranted.pdf", APP_C, FuseGate.MODE_READ_WRITE), "write grant");
            checkEq("ELOOP", viaApi(g, "Download/link.pdf", 0, FuseGate.MODE_READ_ONLY), "a symlink");
            checkEq("EISDIR", viaApi(g, "Download", APP_A, FuseGate.MODE_READ_ONLY), "a directory");
            checkEq("ENOENT", viaApi(g, "Download/missing.pdf", APP_A, FuseGate.MODE_READ_ONLY), "missing");
            checkEq("EACCES", viaApi(g, "DCIM/x.jpg", ISOLATED, FuseGate.MODE_READ_ONLY), "isolated");
            check(g.stats().getDenials() > 0, "denials counted");
        }
    }

    static void fdsWorkAndNothingLeaks() throws Exception {
        try (Fixture f = tree("ofaleak").mount()) {
            FuseGate g = f.gate;
            g.setApp(APP_A, new String[] {PKG_A}, FuseGate.READ_IMAGES);
            // Read and write through the fds, as a service handing them to an app would.
            int fd = g.openForApp("DCIM/x.jpg", APP_A, FuseGate.parseMode("r"));
            try (FileInputStream in = new FileInputStream(adopt(fd))) {
                byte[] buf = new byte[100];
                int n = in.read(buf);
                checkEq("image", new String(buf, 0, n, StandardCharsets.UTF_8), "read through the fd");
            }
            int wfd = g.openForApp("Android/data/" + PKG_A + "/files/mine.txt", APP_A,
                    FuseGate.parseMode("wa"));
            try (FileOutputStream out = new FileOutputStream(adopt(wfd))) {
                out.write("+more".getBytes(StandardCharsets.UTF_8));
            }
            checkEq("mine+more", new String(Files.readAllBytes(f.lower.resolve(
                    "Android/data/" + PKG_A + "/files/mine.txt")), StandardCharsets.UTF_8), "appended");
            int tfd = g.openForApp("Android/data/" + PKG_A + "/files/mine.txt", APP_A,
                    FuseGate.parseMode("rwt"));
            close(tfd);
            checkEq(0L, Files.size(f.lower.resolve("Android/data/" + PKG_A + "/files/mine.txt")), "truncated");

            long nodes0 = g.stats().getNodes();
            int fds0 = openFdCount();
            int calls = 100_000, ok = 0;
            String[] paths = {"DCIM/x.jpg", "Download/doc.pdf", "Android/data/" + PKG_B + "/files/secret.txt",
                    "Download/missing", "Download/.hidden.txt"};
            long t0 = System.nanoTime();
            for (int i = 0; i < calls; i++) {
                String path = paths[i % paths.length];
                try {
                    close(g.openForApp(path, APP_A, FuseGate.MODE_READ_ONLY));
                    ok++;
                } catch (ErrnoException e) {
                    // denied or missing: no fd was made
                }
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            int fds1 = openFdCount();
            long nodes1 = g.stats().getNodes();
            System.out.printf("    %d openForApp calls (%d allowed) in %d ms (%.1f us each);"
                    + " fds %d -> %d, nodes %d -> %d%n", calls, ok, ms, ms * 1000.0 / calls, fds0,
                    fds1, nodes0, nodes1);
            checkEq(calls / paths.length, ok, "allowed calls");
            checkEq(fds0, fds1, "open fds of this process");
            checkEq(nodes0, nodes1, "the daemon's nodes (every lookup given back)");
        }
    }

    static void refusesBadInput() throws Exception {
        try (Fixture f = tree("ofabad").mount()) {
            FuseGate g = f.gate;
            Class<IllegalArgumentException> iae = IllegalArgumentException.class;
            int r = FuseGate.MODE_READ_ONLY;
            expectThrows(iae, "MODE_CREATE", () -> g.openForApp("Download/doc.pdf", 0, FuseGate.MODE_WRITE_ONLY | 0x08000000));
            expectThrows(iae, "no access mode", () -> g.openForApp("Download/doc.pdf", 0, 0));
            expectThrows(iae, "need write access", () -> g.openForApp("Download/doc.pdf", 0, r | FuseGate.MODE_TRUNCATE));
            expectThrows(iae, "unknown mode bits", () -> g.openForApp("Download/doc.pdf", 0, r | 1));
            expectThrows(iae, "absolute", () -> g.openForApp("/Download/doc.pdf", 0, r));
            expectThrows(iae, "invalid path", () -> g.openForApp("Download/../etc", 0, r));
            expectThrows(iae, "uid", () -> g.openForApp("Download/doc.pdf", -1, r));
            expectThrows(iae, "bad mode", () -> FuseGate.parseMode("x"));
            long h = g.handleForTesting();
            // Past the Java checks, the native side refuses the same input.
            expectThrows(iae, "invalid path", () -> FuseGate.nativeOpenForApp(h, "a/../b", 0, r));
            expectThrows(iae, "path is null", () -> FuseGate.nativeOpenForApp(h, null, 0, r));
            expectThrows(iae, "MODE_CREATE", () -> FuseGate.nativeOpenForApp(h, "Download/doc.pdf", 0, 0x28000000));
            ErrnoException e = expectThrows(ErrnoException.class, "Download/nope",
                    () -> g.openForApp("Download/nope", APP_A, r));
            checkEq(2, e.getErrno(), "ENOENT's number");
            check(e.getMessage().contains("ENOENT"), "the message names it: " + e.getMessage());
            g.close();
            expectThrows(IllegalStateException.class, "closed", () -> g.openForApp("Download/doc.pdf", 0, r));
            expectThrows(IllegalStateException.class, "closed", () -> FuseGate.nativeOpenForApp(h, "Download/doc.pdf", 0, r));
        }
    }
}
