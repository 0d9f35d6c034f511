// The FuseGate API from Kotlin: mount a view, push an app and grants (one and many), hear
// denials and file events, open a file for an app, read the counters. Run by jni/run-tests.sh as:
//     java --add-opens java.base/java.io=ALL-UNNAMED ... dev.fusegate.example.ExampleKt <work dir>
package dev.fusegate.example

import dev.fusegate.ErrnoException
import dev.fusegate.FileEventListener
import dev.fusegate.FuseGate
import dev.fusegate.Options
import java.io.File
import java.io.FileDescriptor
import java.io.FileInputStream
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess

const val CAMERA = 10_057

/** Runs [cmd] as [uid] (via setpriv); true if it succeeded. */
fun runAs(uid: Int, vararg cmd: String): Boolean {
    val argv = listOf("setpriv", "--reuid", "$uid", "--regid", "$uid", "--clear-groups") + cmd
    val p = ProcessBuilder(argv).redirectErrorStream(true).start()
    p.inputStream.readBytes()
    return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0
}

/** A media index's view of the mount: one line per change, in order (a Flow would emit these). */
class IndexFeed : FileEventListener {
    val changes = LinkedBlockingQueue<String>()
    override fun created(path: String, uid: Int) { changes.add("created $path") }
    override fun closedAfterWrite(path: String, uid: Int, size: Long) { changes.add("written $path ($size bytes)") }
    override fun renamed(from: String, to: String, uid: Int, isDirectory: Boolean) { changes.add("renamed $from -> $to") }
    override fun deleted(path: String, uid: Int) { changes.add("deleted $path") }
}

/** The fd as a stream that owns it: what ParcelFileDescriptor.adoptFd(fd) gives on Android. */
fun adopt(fd: Int): FileInputStream {
    val field = FileDescriptor::class.java.getDeclaredField("fd").apply { isAccessible = true }
    return FileInputStream(FileDescriptor().also { field.setInt(it, fd) })
}

fun main(args: Array<String>) {
    val work = File(args.getOrElse(0) { "/tmp/fusegate-kotlin" })
    val lower = File(work, "lower").apply { mkdirs() }
    val mnt = File(work, "mnt").apply { mkdirs() }
    File(lower, "DCIM").mkdirs()
    File(lower, "DCIM/beach.jpg").writeText("jpeg")
    File(lower, "Download").mkdirs()
    File(lower, "Download/ticket.pdf").writeText("pdf")

    val options = Options.builder().threads(2).passthrough(true).cacheTimeoutMillis(1000).build()
    val problems = mutableListOf<String>()
    FuseGate.mount(mnt.path, lower.path, options).use { gate ->
        val denials = LinkedBlockingQueue<String>()
        gate.setDenialListener { batch -> batch.forEach { denials.add("${it.uid} ${it.operation} ${it.path}: ${it.errnoName}") } }

        gate.setApp(CAMERA, arrayOf("com.example.camera"), FuseGate.READ_IMAGES)
        if (!runAs(CAMERA, "cat", "$mnt/DCIM/beach.jpg")) problems += "camera could not read its photo"
        if (runAs(CAMERA, "cat", "$mnt/Download/ticket.pdf")) problems += "camera read a pdf without a grant"
        println("denied: ${denials.poll(10, TimeUnit.SECONDS)}")

        gate.grant(CAMERA, "Download/ticket.pdf", FuseGate.ACCESS_READ)
        if (!runAs(CAMERA, "cat", "$mnt/Download/ticket.pdf")) problems += "the grant did not work"
        gate.revoke(CAMERA, "Download/ticket.pdf")

        // Many changes as one: what a service pushes at boot.
        gate.grantAll(intArrayOf(CAMERA, CAMERA), arrayOf("Download/ticket.pdf", "Download/other.pdf"),
            intArrayOf(FuseGate.ACCESS_READ, FuseGate.ACCESS_WRITE))
        if (!runAs(CAMERA, "cat", "$mnt/Download/ticket.pdf")) problems += "the batch grant did not work"
        gate.revokeAll(intArrayOf(CAMERA, CAMERA), arrayOf("Download/ticket.pdf", "Download/other.pdf"))
        if (runAs(CAMERA, "cat", "$mnt/Download/ticket.pdf")) problems += "the batch revoke did not work"

        try {
            gate.grant(CAMERA, "../etc/passwd", FuseGate.ACCESS_READ)
            problems += "a bad path was accepted"
        } catch (e: IllegalArgumentException) {
            println("refused: ${e.message}")
        }
        // File events: what a media index keeps in step with.
        val feed = IndexFeed()
        gate.setEventListener(feed)
        if (!runAs(CAMERA, "sh", "-c", "echo hi > $mnt/DCIM/new.jpg")) problems += "camera could not make a photo"
        // The kernel sends the close (RELEASE) asynchronously: let it land before the rename.
        while (gate.stats().openFiles > 0) Thread.sleep(10)
        if (!runAs(CAMERA, "mv", "$mnt/DCIM/new.jpg", "$mnt/DCIM/moved.jpg")) problems += "camera could not move a photo"
        val heard = (1..3).map { feed.changes.poll(10, TimeUnit.SECONDS) }
        println("events: $heard")
        if (heard != listOf("created DCIM/new.jpg", "written DCIM/new.jpg (3 bytes)", "renamed DCIM/new.jpg -> DCIM/moved.jpg"))
            problems += "unexpected events $heard"
        gate.setEventListener(null)
        println("events dropped: ${gate.droppedEvents()}")

        // Open for an app, under that app's rules (ContentResolver.openFile's job).
        adopt(gate.openForApp("DCIM/beach.jpg", CAMERA, FuseGate.parseMode("r"))).use {
            println("opened for the camera: ${String(it.readBytes())}")
        }
        try {
            gate.openForApp("Download/ticket.pdf", CAMERA, FuseGate.MODE_READ_ONLY)
            problems += "openForApp opened a pdf the camera may not read"
        } catch (e: ErrnoException) {
            println("openForApp refused: ${e.errnoName}")
        }

        val stats = gate.stats()
        println("passthrough ${gate.passthroughActive()}, ${stats.requests} requests, " +
            "${stats.denials} denials, by opcode ${stats.requestsByOpcode}")
    } // use {} closes: stops and unmounts

    if (problems.isNotEmpty()) {
        println("Kotlin example FAILED: $problems")
        exitProcess(1)
    }
    println("Kotlin example done")
}
