// The FuseGate API from Kotlin: mount a view, push an app and grants (one and many), hear
// denials, read the counters. Run by jni/run-tests.sh as:
//     java ... dev.fusegate.example.ExampleKt <work dir>
package dev.fusegate.example

import dev.fusegate.FuseGate
import dev.fusegate.Options
import java.io.File
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
