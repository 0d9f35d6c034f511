package dev.fusegate;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;

/** What the tests share: mounts over temp dirs, running commands as app uids, assertions. */
final class Harness {
    private Harness() {}

    static final class SkipException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        SkipException(String why) {
            super(why);
        }
    }

    // ---- assertions -------------------------------------------------------------------------

    static void check(boolean ok, String message) {
        if (!ok) {
            throw new AssertionError(message);
        }
    }

    static void checkEq(Object want, Object got, String what) {
        if (want == null ? got != null : !want.equals(got)) {
            throw new AssertionError(what + ": want <" + want + ">, got <" + got + ">");
        }
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }

    /** Runs {@code r}, which must throw exactly {@code type} with a message containing
     * {@code fragment} (case-insensitive). */
    static <T extends Throwable> T expectThrows(Class<T> type, String fragment, ThrowingRunnable r) {
        try {
            r.run();
        } catch (Throwable t) {
            if (t.getClass() != type) {
                AssertionError e = new AssertionError("want " + type.getSimpleName() + " (\""
                        + fragment + "\"), got " + t);
                e.initCause(t);
                throw e;
            }
            String m = String.valueOf(t.getMessage());
            if (!m.toLowerCase().contains(fragment.toLowerCase())) {
                throw new AssertionError("want a message containing \"" + fragment + "\", got \""
                        + m + "\"");
            }
            return type.cast(t);
        }
        throw new AssertionError("want " + type.getSimpleName() + " (\"" + fragment
                + "\"), nothing thrown");
    }

    static void waitFor(String what, long timeoutMs, BooleanSupplier cond) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            sleep(10);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted");
        }
    }

    // ---- the machine ------------------------------------------------------------------------

    static boolean ci() {
        return "true".equals(System.getenv("CI"));
    }

    static int euid() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("Uid:")) {
                    return Integer.parseInt(line.split("\\s+")[2]);
                }
            }
        } catch (IOException e) {
            // fall through
        }
        return -1;
    }

    /** Null if mount tests can run here, else why not. */
    static String whyNoMount() {
        boolean root = euid() == 0;
        boolean fuse = new File("/dev/fuse").exists();
        boolean setpriv = new File("/usr/bin/setpriv").canExecute();
        if (root && fuse && setpriv) {
            return null;
        }
        return "mount tests need root, /dev/fuse and /usr/bin/setpriv (root: " + root
                + ", /dev/fuse: " + fuse + ", setpriv: " + setpriv + ")";
    }

    static String findExecutable(String name) {
        String path = System.getenv("PATH");
        for (String dir : (path == null ? "/usr/bin:/bin" : path).split(":")) {
            File f = new File(dir, name);
            if (f.canExecute()) {
                return f.getPath();
            }
        }
        return null;
    }

    static boolean isMounted(Path p) {
        String want = p.toAbsolutePath().normalize().toString();
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/mountinfo"))) {
                String[] f = line.split(" ");
                if (f.length > 4 && f[4].equals(want)) {
                    return true;
                }
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return false;
    }

    /** The fd numbers of this process that are open on {@code target}. */
    static List<Integer> fdsOf(Path target) {
        List<Integer> fds = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(Paths.get("/proc/self/fd"))) {
            for (Path p : ds) {
                try {
                    if (Files.readSymbolicLink(p).equals(target)) {
                        fds.add(Integer.parseInt(p.getFileName().toString()));
                    }
                } catch (IOException | NumberFormatException e) {
                    // gone meanwhile, or the directory's own fd
                }
            }
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return fds;
    }

    // ---- commands, as root or as an app -----------------------------------------------------

    static final class Result {
        final int exit;
        final String out;
        final String err;

        Result(int exit, String out, String err) {
            this.exit = exit;
            this.out = out;
            this.err = err;
        }

        /** The errno a failed command reported, by its strerror text; "OK" on success. */
        String outcome() {
            if (exit == 0) {
                return "OK";
            }
            if (err.contains("Permission denied")) return "EACCES";
            if (err.contains("No such file or directory")) return "ENOENT";
            if (err.contains("Operation not permitted")) return "EPERM";
            if (err.contains("Transport endpoint is not connected")) return "ENOTCONN";
            if (err.contains("Input/output error")) return "EIO";
            return "exit " + exit + ": " + err.trim();
        }

        @Override
        public String toString() {
            return "exit " + exit + ", out \"" + out + "\", err \"" + err.trim() + "\"";
        }
    }

    static final long COMMAND_TIMEOUT_MS = 20_000;

    /** Runs {@code cmd} as {@code uid} (its gid the same, no groups); root runs it directly. */
    static Result run(int uid, String... cmd) {
        return runFor(COMMAND_TIMEOUT_MS, uid, cmd);
    }

    /** {@link #run}, allowing the command {@code timeoutMs}. */
    static Result runFor(long timeoutMs, int uid, String... cmd) {
        List<String> argv = new ArrayList<>();
        if (uid != 0) {
            argv.addAll(Arrays.asList("/usr/bin/setpriv", "--reuid", Integer.toString(uid),
                    "--regid", Integer.toString(uid), "--clear-groups"));
        }
        argv.addAll(Arrays.asList(cmd));
        ProcessBuilder pb = new ProcessBuilder(argv).directory(new File("/"));
        pb.environment().put("LC_ALL", "C");
        try {
            Process p = pb.start();
            p.getOutputStream().close();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            Thread errReader = new Thread(() -> copy(p.getErrorStream(), err));
            errReader.start();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            copy(p.getInputStream(), out);
            if (!p.waitFor(timeoutMs, TimeUnit.MILLISECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("command hung (deadlock?): " + argv);
            }
            errReader.join(COMMAND_TIMEOUT_MS);
            return new Result(p.exitValue(), out.toString("UTF-8"), err.toString("UTF-8"));
        } catch (IOException e) {
            throw new AssertionError("running " + argv + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted");
        }
    }

    private static void copy(InputStream in, ByteArrayOutputStream out) {
        byte[] buf = new byte[8192];
        try {
            int n;
            while ((n = in.read(buf)) > 0) {
                out.write(buf, 0, n);
            }
        } catch (IOException e) {
            // process ended
        }
    }

    /** Reads {@code file} as {@code uid}: "OK:<content>" or the errno name. */
    static String readAs(int uid, Path file) {
        Result r = run(uid, "cat", "--", file.toString());
        return r.exit == 0 ? "OK:" + r.out : r.outcome();
    }

    /** Writes (truncating or creating) {@code file} as {@code uid}: "OK" or the errno name. */
    static String writeAs(int uid, Path file, String content) {
        return run(uid, "sh", "-c", "printf %s \"$2\" > \"$1\"", "sh", file.toString(), content)
                .outcome();
    }

    /** Appends to {@code file} as {@code uid} (an open for writing, no create). */
    static String appendAs(int uid, Path file, String content) {
        return run(uid, "sh", "-c", "printf %s \"$2\" >> \"$1\"", "sh", file.toString(), content)
                .outcome();
    }

    /** Lists {@code dir} as {@code uid}: the names, sorted, or the errno name. */
    static String listAs(int uid, Path dir) {
        Result r = run(uid, "ls", "-1A", "--", dir.toString());
        if (r.exit != 0) {
            return r.outcome();
        }
        String[] names = r.out.trim().isEmpty() ? new String[0] : r.out.trim().split("\n");
        Arrays.sort(names);
        return String.join(",", names);
    }

    // ---- a mounted view over a temp dir -----------------------------------------------------

    private static final AtomicInteger COUNTER = new AtomicInteger();

    static Path newTempDir(String tag) throws IOException {
        String base = System.getenv("FUSEGATE_TEST_TMP");
        Path dir = Paths.get(base == null ? System.getProperty("java.io.tmpdir") : base,
                "fusegate-jni-" + tag + "-" + ProcessHandle.current().pid() + "-"
                        + COUNTER.incrementAndGet());
        deleteTree(dir);
        Files.createDirectories(dir);
        // App uids must be able to reach the mount point.
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        return dir;
    }

    static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.deleteIfExists(p);
            }
        }
    }

    /** A lower dir and a mount point; {@link #close()} closes the gate and cleans up. */
    static final class Fixture implements AutoCloseable {
        final Path root;
        final Path lower;
        final Path mnt;
        FuseGate gate;

        Fixture(String tag) throws IOException {
            String why = whyNoMount();
            if (why != null) {
                if (ci()) {
                    throw new AssertionError(why + " (CI=true: a failure, not a skip)");
                }
                throw new SkipException(why);
            }
            root = newTempDir(tag);
            lower = Files.createDirectory(root.resolve("lower"));
            mnt = Files.createDirectory(root.resolve("mnt"));
            Files.setPosixFilePermissions(lower, PosixFilePermissions.fromString("rwxr-xr-x"));
            Files.setPosixFilePermissions(mnt, PosixFilePermissions.fromString("rwxr-xr-x"));
        }

        /** Creates a file in the lower dir (as root: it has no owner). */
        Fixture file(String rel, String content) throws IOException {
            Path p = lower.resolve(rel);
            Files.createDirectories(p.getParent());
            Files.write(p, content.getBytes(StandardCharsets.UTF_8));
            return this;
        }

        Fixture mount(Options options) throws IOException {
            gate = FuseGate.mount(mnt.toString(), lower.toString(), options);
            return this;
        }

        Fixture mount() throws IOException {
            return mount(Options.defaults());
        }

        /** The path of {@code rel} through the mount. */
        Path at(String rel) {
            return rel.isEmpty() ? mnt : mnt.resolve(rel);
        }

        @Override
        public void close() throws IOException {
            if (gate != null) {
                gate.close();
            }
            if (isMounted(mnt)) {
                run(0, "umount", "-l", mnt.toString());
            }
            if (!isMounted(mnt)) {
                deleteTree(root);
            }
        }
    }
}
