package dev.fusegate;

import static dev.fusegate.FuseGateTest.APP_A;
import static dev.fusegate.FuseGateTest.APP_B;
import static dev.fusegate.FuseGateTest.IMAGE;
import static dev.fusegate.FuseGateTest.PDF;
import static dev.fusegate.FuseGateTest.PKG_A;
import static dev.fusegate.FuseGateTest.PKG_B;
import static dev.fusegate.FuseGateTest.SONG;
import static dev.fusegate.FuseGateTest.standardTree;
import static dev.fusegate.Harness.checkEq;
import static dev.fusegate.Harness.expectThrows;
import static dev.fusegate.Harness.readAs;

import dev.fusegate.Harness.Fixture;
import java.util.Arrays;

/**
 * Batch changes (setApps, grantAll, revokeAll): many changes as one policy generation, taking
 * effect through a real mount, all or nothing on bad input.
 */
final class BatchTest {
    private BatchTest() {}

    static final int GRANTS = 5_000;

    static void register(TestMain t) {
        t.add("setAppsTakesEffectAtOnce", BatchTest::setAppsTakesEffectAtOnce);
        t.add("grantAllOf5000AndRevokeAllTakeEffect", 120_000, BatchTest::grantAllAndRevokeAll);
        t.add("badBatchThrowsAndAppliesNothing", BatchTest::badBatchThrowsAndAppliesNothing);
        t.add("batchTimings", 300_000, BatchTest::batchTimings);
    }

    static String file(int i) {
        return "Download/batch/f" + i + ".pdf";
    }

    static int[] filled(int n, int value) {
        int[] a = new int[n];
        Arrays.fill(a, value);
        return a;
    }

    static String[] files(int n) {
        String[] paths = new String[n];
        for (int i = 0; i < n; i++) {
            paths[i] = file(i);
        }
        return paths;
    }

    static void setAppsTakesEffectAtOnce() throws Exception {
        try (Fixture f = standardTree("batch-apps").mount()) {
            f.gate.setApps(new int[] {APP_A, APP_B, APP_A},
                    new String[][] {{PKG_A}, {PKG_B}, {PKG_A}},
                    new int[] {FuseGate.READ_AUDIO, FuseGate.READ_IMAGES, FuseGate.READ_IMAGES});
            checkEq("OK:image-bytes", readAs(APP_A, f.at(IMAGE)), "the later entry of a uid wins");
            checkEq("EACCES", readAs(APP_A, f.at(SONG)), "the earlier entry of a uid is gone");
            checkEq("OK:image-bytes", readAs(APP_B, f.at(IMAGE)), "second app of the batch");
            f.gate.setApps(new int[0], new String[0][], new int[0]); // an empty batch is fine
            checkEq("OK:image-bytes", readAs(APP_B, f.at(IMAGE)), "after an empty batch");
        }
    }

    static void grantAllAndRevokeAll() throws Exception {
        Fixture fx = standardTree("batch-grants");
        for (int i = 0; i < GRANTS; i++) {
            fx.file(file(i), "doc" + i);
        }
        try (Fixture f = fx.mount()) {
            int[] some = {0, 1, GRANTS / 2, GRANTS - 1};
            for (int i : some) {
                checkEq("EACCES", readAs(APP_A, f.at(file(i))), "before the batch: " + file(i));
            }
            f.gate.grantAll(filled(GRANTS, APP_A), files(GRANTS), filled(GRANTS, FuseGate.ACCESS_READ));
            for (int i : some) {
                checkEq("OK:doc" + i, readAs(APP_A, f.at(file(i))), "granted in the batch: " + file(i));
                checkEq("EACCES", readAs(APP_B, f.at(file(i))), "another uid: " + file(i));
            }
            checkEq("EACCES", readAs(APP_A, f.at(PDF)), "a file outside the batch");

            // Revoke every other one, as one batch.
            String[] odd = new String[GRANTS / 2];
            for (int i = 0; i < odd.length; i++) {
                odd[i] = file(2 * i + 1).toUpperCase(java.util.Locale.ROOT).replace("DOWNLOAD", "Download");
            }
            f.gate.revokeAll(filled(odd.length, APP_A), odd);
            checkEq("OK:doc0", readAs(APP_A, f.at(file(0))), "even: kept");
            checkEq("EACCES", readAs(APP_A, f.at(file(1))), "odd: revoked (case-insensitively)");
            checkEq("EACCES", readAs(APP_A, f.at(file(GRANTS - 1))), "last: revoked");
            checkEq("OK:doc" + GRANTS / 2, readAs(APP_A, f.at(file(GRANTS / 2))), "middle even: kept");
        }
    }

    static void badBatchThrowsAndAppliesNothing() throws Exception {
        try (Fixture f = standardTree("batch-bad").mount()) {
            Class<IllegalArgumentException> iae = IllegalArgumentException.class;
            FuseGate g = f.gate;
            int n = 1000;
            int[] uids = filled(n, APP_A);
            int[] read = filled(n, FuseGate.ACCESS_READ);
            String[] paths = files(n);
            paths[0] = PDF;
            String[] bad = paths.clone();
            bad[n - 1] = "Download/../etc";

            // The Java checks, naming the entry.
            expectThrows(iae, "paths[999]: invalid path", () -> g.grantAll(uids, bad, read));
            expectThrows(iae, "uids is null", () -> g.grantAll(null, paths, read));
            expectThrows(iae, "paths is null", () -> g.grantAll(uids, null, read));
            expectThrows(iae, "access has 2", () -> g.grantAll(uids, paths, new int[2]));
            int[] badAccess = read.clone();
            badAccess[5] = 4;
            expectThrows(iae, "access[5]: unknown access 4", () -> g.grantAll(uids, paths, badAccess));
            int[] badUids = uids.clone();
            badUids[7] = -3;
            expectThrows(iae, "uids[7]: invalid uid -3", () -> g.grantAll(badUids, paths, read));
            String[] nulls = paths.clone();
            nulls[3] = null;
            expectThrows(iae, "paths[3] is null", () -> g.revokeAll(uids, nulls));
            expectThrows(iae, "packages[1][0] is empty", () -> g.setApps(new int[] {APP_A, APP_B},
                    new String[][] {{PKG_A}, {""}}, new int[] {FuseGate.READ_IMAGES, 0}));
            expectThrows(iae, "permissions[1]: unknown permission bits", () -> g.setApps(
                    new int[] {APP_A, APP_B}, new String[][] {{PKG_A}, {PKG_B}},
                    new int[] {FuseGate.READ_IMAGES, 1 << 20}));

            // The native side checks on its own, with the same messages.
            long h = g.handleForTesting();
            expectThrows(iae, "paths[999]: invalid path", () -> FuseGate.nativeGrantAll(h, uids, bad, read));
            expectThrows(iae, "paths has 999", () -> FuseGate.nativeGrantAll(h, uids,
                    Arrays.copyOf(paths, n - 1), read));
            expectThrows(iae, "access[5]: unknown access 4", () -> FuseGate.nativeGrantAll(h, uids, paths, badAccess));
            expectThrows(iae, "uids[7]: invalid uid -3", () -> FuseGate.nativeGrantAll(h, badUids, paths, read));
            expectThrows(iae, "paths[3] is null", () -> FuseGate.nativeRevokeAll(h, uids, nulls));
            expectThrows(iae, "access is null", () -> FuseGate.nativeGrantAll(h, uids, paths, null));
            expectThrows(iae, "packages[1] is null", () -> FuseGate.nativeSetApps(h,
                    new int[] {APP_A, APP_B}, new String[][] {{PKG_A}, null}, new int[] {1, 0}));
            // Only the policy refuses this package name: the batch is checked whole before any of
            // it applies, so the valid first entry is not applied either.
            expectThrows(iae, "invalid package name", () -> g.setApps(new int[] {APP_A, APP_B},
                    new String[][] {{PKG_A}, {"x/y"}}, new int[] {FuseGate.READ_IMAGES, 0}));

            checkEq("EACCES", readAs(APP_A, f.at(PDF)), "no grant of a refused batch applied");
            checkEq("EACCES", readAs(APP_A, f.at(IMAGE)), "no app of a refused batch applied");
            g.grantAll(uids, paths, read); // and the daemon takes a good one afterwards
            checkEq("OK:pdf-bytes", readAs(APP_A, f.at(PDF)), "a good batch after the bad ones");
        }
    }

    /**
     * Prints, asserts nothing about speed: grants in one batch vs one by one. The full sizes
     * (FUSEGATE_BATCH_FULL=1: 100,000 in one batch, 5,000 one by one) take long on a debug
     * build, where one-by-one costs grow with the table; by default a twentieth of that.
     */
    static void batchTimings() throws Exception {
        boolean full = "1".equals(System.getenv("FUSEGATE_BATCH_FULL"));
        int single = full ? 5_000 : 250, batch = full ? 100_000 : 5_000;
        try (Fixture f = standardTree("batch-time-single").mount()) {
            long start = System.nanoTime();
            for (int i = 0; i < single; i++) {
                f.gate.grant(APP_A, file(i), FuseGate.ACCESS_READ);
            }
            long singleMs = (System.nanoTime() - start) / 1_000_000;
            System.out.println("    timing: " + single + " grants one at a time: " + singleMs + " ms ("
                    + (singleMs * 1000 / single) + " us each)");
        }
        try (Fixture f = standardTree("batch-time-batch").mount()) {
            int[] uids = new int[batch];
            for (int i = 0; i < batch; i++) {
                uids[i] = 10_000 + i % 500;
            }
            String[] paths = files(batch);
            int[] read = filled(batch, FuseGate.ACCESS_READ);
            long start = System.nanoTime();
            f.gate.grantAll(uids, paths, read);
            long batchMs = (System.nanoTime() - start) / 1_000_000;
            System.out.println("    timing: " + batch + " grants in one grantAll: " + batchMs + " ms ("
                    + (batchMs * 1000 / batch) + " us each)");
            checkEq("EACCES", readAs(APP_A, f.at(PDF)), "still serving, no stray grant");
        }
    }
}
